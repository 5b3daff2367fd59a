"""Headless batch with the npe2 commands: no viewer, no display, no Qt.

Makes a few tiny noisy images in a temporary folder, then runs the plugin's commands
through npe2 exactly as a script or a scheduler would::

    python examples/batch_npe2.py            # or: python examples/batch_npe2.py WORKDIR

``napari-noise2score.estimate_noise`` -> ``.train`` -> ``.denoise`` (run twice: the second
run skips the finished files). Prints what each command returns.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from npe2 import PluginManager

PLUGIN = "napari-noise2score"


def make_images(folder: Path, n: int = 3, size: int = 128, sigma: float = 20.0) -> None:
    """Smooth 8-bit images with Gaussian noise of std ``sigma`` grey levels."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        clean = 60 + 120 * ((xx - 0.5 + 0.1 * i) ** 2 + (yy - 0.5) ** 2 < 0.08) + 40 * xx
        noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255).astype(np.uint8)
        tifffile.imwrite(folder / f"cell_{i:02d}.tif", noisy)


def main(workdir: Path) -> None:
    make_images(workdir / "raw")
    pm = PluginManager.instance()
    pm.discover()
    run = pm.commands.execute

    estimates = run(f"{PLUGIN}.estimate_noise", kwargs={"inputs": str(workdir / "raw")})
    for e in estimates:
        print(f"{Path(e['file']).name}: {e.get('model')}, sigma {e.get('sigma', 0):.1f}")

    model = run(f"{PLUGIN}.train", kwargs={
        "inputs": str(workdir / "raw" / "*.tif"), "output": str(workdir / "model.n2s"),
        "noise": "gaussian", "sigma": 20.0, "max_steps": 20, "max_seconds": 60.0,
        "width": 8, "depth": 2, "patch_size": 32, "batch_size": 4, "device": "cpu"})
    print(f"model: {model}")

    for attempt in ("first run", "re-run"):
        summary = run(f"{PLUGIN}.denoise", kwargs={
            "inputs": str(workdir / "raw"), "model": model, "output": str(workdir / "out"),
            "device": "cpu"})
        print(f"{attempt}: done {len(summary['done'])}, skipped {len(summary['skipped'])}, "
              f"failed {len(summary['failed'])} in {summary['seconds']:.1f} s")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
