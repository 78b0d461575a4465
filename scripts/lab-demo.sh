#!/usr/bin/env bash
# The main job on a fresh machine: install, bring Studio's stack up on loopback (the lab), check it,
# then drill the 502 runbook: break each fault users would report as a 502, diagnose, fix.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
sd=.venv/bin/studiodoctor
$sd lab up
status=0
$sd check --profile lab || status=$?
echo "studiodoctor check --profile lab exited $status (0 ok, 1 warn, 2 fail, 3 unknown)"
[ "$status" -eq 0 ]
$sd lab drill 502
echo
echo "The lab stays up. Try: $sd lab break redis-down; $sd diagnose publishing --profile lab; $sd lab fix"
echo "Every fault: $sd lab drill --all      Stop it: $sd lab down"
