#!/usr/bin/env bash
# The main job on a fresh machine: install, bring the lab up on loopback, check it, drill a diagnosis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/studiodoctor lab up
status=0
.venv/bin/studiodoctor check --profile lab || status=$?
echo "studiodoctor check --profile lab exited $status (0 ok, 1 warn, 2 fail, 3 unknown)"
.venv/bin/studiodoctor diagnose 502 --profile lab --format markdown || true
echo "The lab stays up: try 'studiodoctor diagnose publishing --profile lab'; stop it with '.venv/bin/studiodoctor lab down'."
