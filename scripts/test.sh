#!/usr/bin/env bash
# Run the test suite (ruff, then pytest); GUI tests run in a real napari viewer under Xvfb.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# shellcheck disable=SC1091
. "$VENV/bin/activate"
ruff check src tests benchmarks examples
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null 2>&1; then
    exec xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest "$@"
fi
[ -n "${DISPLAY:-}" ] || export QT_QPA_PLATFORM=offscreen
exec python -m pytest "$@"
