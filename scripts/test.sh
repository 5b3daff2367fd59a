#!/usr/bin/env bash
# The test suite on a fresh machine in one command: sets up .venv when missing (or stale),
# installs Xvfb and Qt's X libraries when missing, then runs ruff and pytest; the GUI tests
# drive a real napari viewer under Xvfb. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_env.sh
. scripts/_env.sh
n2s_ensure_venv
n2s_ensure_screen_libs
VENV=${VENV:-.venv}
# shellcheck disable=SC1091
. "$VENV/bin/activate"
ruff check src tests benchmarks examples
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null 2>&1; then
    exec xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest "$@"
fi
[ -n "${DISPLAY:-}" ] || export QT_QPA_PLATFORM=offscreen
exec python -m pytest "$@"
