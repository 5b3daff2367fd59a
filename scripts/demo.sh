#!/usr/bin/env bash
# The main job on a fresh machine in one command: sets up .venv when missing (or stale),
# then trains on the bundled synthetic fluorescence sample, denoises it and prints the PSNR
# before and after (files in ./noise2score-demo). Extra arguments go to
# `napari-noise2score demo` (e.g. --max-seconds 30 -o other-folder).
# With --gui: opens napari with the sample loaded and both widgets docked instead.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_env.sh
. scripts/_env.sh
n2s_ensure_venv
VENV=${VENV:-.venv}
if [ "${1:-}" = "--gui" ]; then
    shift
    n2s_ensure_screen_libs
    exec "$VENV/bin/napari-noise2score" gui "$@"
fi
exec "$VENV/bin/napari-noise2score" demo "$@"
