#!/usr/bin/env bash
# Set everything up: a virtual environment (.venv) with napari-noise2score, the torch build
# that suits this machine (CUDA where an NVIDIA GPU is present, MPS on macOS, else a small
# CPU build), napari with Qt 6, the test and benchmark tools, and bioimageio.spec/core for
# bioimage.io model packages (docs/export.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

"$PYTHON" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "NVIDIA GPU found: installing the CUDA build of torch"
    pip install "torch>=2.1"
elif [ "$(uname -s)" = "Darwin" ]; then
    pip install "torch>=2.1"
else
    echo "no GPU: installing a CPU build of torch"
    pip install "torch==2.13.0+cpu" \
        || pip install torch --index-url https://download.pytorch.org/whl/cpu \
        || pip install "torch>=2.1"
fi

pip install -e ".[testing,benchmarks,bioimageio]"
echo "ready: . $VENV/bin/activate"
