"""The pretrained prior on Set12 images: zero-shot, prior + short fine-tunes, scratch, BM3D.

Per Gaussian sigma, the noisy images (float, unclipped, seed 0 + index) are denoised by the
shipped prior with no training; by the prior fine-tuned on all of them for each budget in
``--finetune``; by a model trained from scratch for ``--scratch``; and by BM3D with the true
sigma. Budgets are wall-clock seconds of ``train`` (run it pinned to one core:
``taskset -c 0 env OMP_NUM_THREADS=1``; torch limited to ``--threads``), or with
``--unit steps`` training steps, which do not depend on what else shares the core.

    python benchmarks/prior.py --data ../shared/data/set12 --images 01 02 03 --sigmas 25 50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from napari_noise2score import api
from napari_noise2score.core import prior as P
from napari_noise2score.core.noise import NoiseParams, simulate
from napari_noise2score.core.prior import psnr


def run_sigma(clean: list[np.ndarray], sigma: float, finetune: list[float], scratch: float,
              seed: int, unit: str = "seconds") -> dict:
    noisy = [simulate(c, NoiseParams("gaussian", sigma), seed=seed + i).astype(np.float32)
             for i, c in enumerate(clean)]

    def scores(model) -> tuple[list[float], float]:
        t0 = time.perf_counter()
        values = [psnr(c, api.denoise(n, model, sigma=sigma)) for c, n in zip(clean, noisy,
                                                                             strict=True)]
        return values, time.perf_counter() - t0

    rows: dict[str, dict] = {"noisy": {"psnr": [psnr(c, n) for c, n in zip(clean, noisy,
                                                                             strict=True)]}}
    values, seconds = scores(api.load_model("pretrained", device="cpu"))
    rows["zero-shot prior"] = {"psnr": values, "denoise_s": seconds}
    short = "s" if unit == "seconds" else "steps"
    scratch_run = [(f"scratch {scratch:g} {short}", scratch, "scratch")] if scratch > 0 else []
    for name, budget, init in [*((f"prior + {b:g} {short}", b, "pretrained") for b in finetune),
                               *scratch_run]:
        t0 = time.perf_counter()
        limit = ({"max_seconds": budget} if unit == "seconds" else
                 {"max_seconds": None, "max_steps": int(budget)})
        model = api.train(noisy, noise="gaussian", sigma=sigma, seed=seed, init=init,
                          device="cpu", **limit)
        train_s = time.perf_counter() - t0
        values, seconds = scores(model)
        rows[name] = {"psnr": values, "train_s": train_s, "steps": model.steps,
                      "denoise_s": seconds}
    import bm3d

    t0 = time.perf_counter()
    rows["BM3D"] = {"psnr": [psnr(c, bm3d.bm3d(n.astype(np.float64), sigma_psd=sigma))
                             for c, n in zip(clean, noisy, strict=True)],
                    "denoise_s": time.perf_counter() - t0}
    for name, row in rows.items():
        row["mean"] = round(float(np.mean(row["psnr"])), 3)
        print(f"sigma {sigma:g}  {name:18s} {row['mean']:.2f} dB  "
              f"{[round(v, 2) for v in row['psnr']]}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/set12"))
    p.add_argument("--images", nargs="+", default=["01", "02", "03"])
    p.add_argument("--sigmas", nargs="+", type=float, default=[25.0, 50.0])
    p.add_argument("--finetune", nargs="*", type=float, default=[30.0, 120.0],
                   help="fine-tune budgets (none given: zero-shot and BM3D only)")
    p.add_argument("--scratch", type=float, default=120.0, help="0: no scratch model")
    p.add_argument("--unit", choices=("seconds", "steps"), default="seconds",
                   help="budgets in wall-clock seconds (default) or in training steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--prior", type=Path, help="a prior file (scripts/pretrain.py --export) "
                   "instead of the shipped Gaussian-route one")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.prior is not None:  # what load_prior reads
        P.PRIOR_FILES = {**P.PRIOR_FILES, P.GAUSSIAN_ROUTE: args.prior.resolve()}
    torch.set_num_threads(args.threads)
    files = [args.data / f"{name}.png" for name in args.images]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 1
    clean = [np.asarray(Image.open(f).convert("L"), dtype=np.float32) for f in files]
    prior = P.load_prior(route=P.GAUSSIAN_ROUTE).provenance
    result = {"images": args.images, "threads": args.threads, "seed": args.seed,
              "unit": args.unit,
              "prior": {k: prior.get(k) for k in ("steps", "seconds", "commit")},
              "prior_file": str(P.PRIOR_FILES[P.GAUSSIAN_ROUTE]),
              "sigmas": {f"{s:g}": run_sigma(clean, s, args.finetune, args.scratch, args.seed,
                                                   args.unit)
                         for s in args.sigmas}}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
