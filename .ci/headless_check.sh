#!/usr/bin/env bash
# A headless install works: `pip install .` without extras into a fresh virtual environment
# (no napari, no Qt), then `napari-noise2score run` on a small generated TIFF with a tiny
# training budget. Everything lives under a temporary folder in /tmp, removed at the end.
#   N2S_TORCH: the torch requirement installed first (default torch==2.13.0, a CPU build
#   here; an unpinned torch would pull gigabytes of CUDA libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/n2s-headless.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS
step() { echo "headless check: $* ($((SECONDS - start)) s)"; }

# the working tree's files (tracked, and new ones git does not ignore), so that the build
# leaves nothing in the checkout
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf - | tar -xf - -C "$WORK/src"

"$PYTHON" -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
step "installing ${N2S_TORCH:-torch==2.13.0}"
"$PY" -m pip install -q "${N2S_TORCH:-torch==2.13.0}"
step "pip install . (no extras)"
"$PY" -m pip install -q "$WORK/src"
"$PY" - <<'PY'
import importlib.util
present = [m for m in ("napari", "PyQt5", "PyQt6", "PySide2", "PySide6")
           if importlib.util.find_spec(m) is not None]
assert not present, f"a headless install should not bring {present}"
PY

"$PY" - "$WORK/raw.tif" <<'PY'
import sys

import numpy as np
import tifffile

rng = np.random.default_rng(0)
y, x = np.mgrid[:96, :96]
clean = 120 + 60 * np.sin(x / 9.0) * np.cos(y / 7.0)
noisy = clean[None] + rng.normal(0, 12, (2, 96, 96))
tifffile.imwrite(sys.argv[1], noisy.astype(np.float32), metadata={"axes": "ZYX"})
PY
step "napari-noise2score run"
cd "$WORK"  # not the checkout: the installed package, not the source tree, is imported
"$WORK/venv/bin/napari-noise2score" run raw.tif -o out.tif --steps 20 --patch-size 32 \
    --batch-size 4 --device cpu --save-model model.n2s
"$PY" - <<'PY'
import numpy as np
import tifffile

import napari_noise2score

out = tifffile.imread("out.tif")
assert out.shape == (2, 96, 96) and out.dtype == np.float32 and np.isfinite(out).all()
assert "site-packages" in napari_noise2score.__file__, napari_noise2score.__file__
print("installed", napari_noise2score.__version__, "from", napari_noise2score.__file__)
PY
step "passed"
