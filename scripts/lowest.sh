#!/usr/bin/env bash
# Lowest-version pass: a second venv (.venv-lowest) with every direct runtime dependency pinned to the
# floor pyproject.toml declares (scripts/floors.py derives the pins: typer==0.29, redis==8.1, ...), then
# the tests of the layers that use those SDKs and of the CLI. A floor that fails here is not true:
# raise it in pyproject.toml to what passes. CI: .ci/run calls this after the main suite.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LOWEST_VENV:-.venv-lowest}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
mapfile -t pins < <(python3 scripts/floors.py)
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' "${pins[@]}" 2>&1 \
  | grep -v -E '^WARNING: Location' || true
"$venv/bin/python" scripts/floors.py --check      # every floor really installed (nothing lifted by a resolver)
echo "lowest: ${pins[*]}" >&2
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider \
  tests/checks/test_redis.py tests/checks/test_postgres.py tests/checks/test_celery.py \
  tests/checks/test_kubernetes.py tests/checks/test_gcs.py tests/checks/test_cloudflare.py \
  tests/checks/test_dns_records.py tests/engine/test_cli.py tests/safety/test_least_privilege.py \
  tests/safety/test_preflight.py tests/safety/test_no_private_imports.py tests/automation/test_exports.py \
  tests/checks/test_tlsprobe.py tests/checks/test_sentry_project.py "$@"
