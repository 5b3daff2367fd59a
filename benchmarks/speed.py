"""Denoising speed with each averaging setting, through the command line's own path.

Writes one 2048 x 2048 uint16 plane (Poisson-Gaussian noise) to FOLDER, makes a model with
the default CPU network (its weights do not change the time), then denoises the plane with
``api.denoise_file`` (what ``napari-noise2score denoise BIG.tif --model M -o OUT`` runs):
the default (auto), the 8-fold average (``--tta``), one pass (``--no-tta``), the Wiener
step after Tweedie's (``--wiener``) and both, each ``--repeats`` times after a warm-up.
Prints JSON (seconds, megapixels per second).

    python benchmarks/speed.py /tmp/n2s-speed --out benchmarks/results/speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

#: name: (tta, wiener) as the CLI's flags set them (None: auto, by the input's size)
SETTINGS = {"auto (default)": (None, None), "8-fold average (--tta)": (True, None),
            "one pass (--no-tta)": (False, None), "Wiener step (--wiener)": (None, True),
            "both (--tta --wiener)": (True, True)}


def make_plane(path: Path, size: int) -> None:
    import tifffile

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    clean = 400 + 300 * np.sin(9 * xx) * np.cos(7 * yy)
    rng = np.random.default_rng(0)
    noisy = rng.poisson(clean / 4.0) * 4.0 + rng.normal(100, 8, clean.shape)
    tifffile.imwrite(path, np.clip(noisy, 0, 65535).astype(np.uint16))


def default_model(device: str = "cpu"):
    """The default network for ``device``, untrained (speed does not depend on weights)."""
    import torch

    from napari_noise2score.core.config import TrainConfig
    from napari_noise2score.core.model import Noise2ScoreModel
    from napari_noise2score.core.training import build_network

    cfg = TrainConfig(noise="gaussian", sigma=8.0, device=device).resolved(device, 0.02)
    torch.manual_seed(0)
    return Noise2ScoreModel(cfg, build_network(cfg).eval(), scale=65535.0, final_sigma_a=0.01)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    from napari_noise2score.api import denoise_file
    from napari_noise2score.core.inference import describe_tta

    args.folder.mkdir(parents=True, exist_ok=True)
    src = args.folder / "plane.tif"
    make_plane(src, args.size)
    model = default_model()
    pixels = args.size * args.size
    rows = []
    for name in args.settings:
        tta, wiener = SETTINGS[name]
        m = model.with_options(tta=tta, wiener=wiener)
        out = args.folder / "out.tif"
        times = []
        for i in range(args.repeats + 1):  # the first run warms up
            out.unlink(missing_ok=True)
            t0 = time.perf_counter()
            denoise_file(src, m, out)
            if i:
                times.append(time.perf_counter() - t0)
        best, median = min(times), float(np.median(times))
        rows.append({"setting": name, "used": describe_tta(tta, pixels), "wiener": wiener,
                     "seconds_min": best, "seconds_median": median,
                     "mpix_per_s_median": pixels / median / 1e6})
        print(f"{name}: {median:.2f} s median, {pixels / median / 1e6:.2f} Mpx/s", flush=True)
    result = {"plane": [args.size, args.size], "dtype": "uint16", "repeats": args.repeats,
              "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
              "network": {k: model.config.to_dict()[k] for k in ("width", "depth", "unshuffle")},
              "rows": rows}
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
