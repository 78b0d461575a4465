#!/usr/bin/env bash
# Installs what studiodoctor, its lab and its tests need on a fresh Debian machine:
# system servers (apt) and the project with its extras in ./.venv (pip). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
# the browser tests (tests/browser/) drive Debian's Chromium through Playwright: never a downloaded browser
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: apt-get install ${need[*]}" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1   # the pip package brings its driver only; `playwright install` is never run
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v -E '^WARNING: Location' || true
.venv/bin/python -c "import studiodoctor, checks" >/dev/null
echo "bootstrap: ready (.venv/bin/studiodoctor)" >&2
