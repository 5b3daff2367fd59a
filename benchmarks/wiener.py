"""The Wiener step with no training: the shipped prior (or another prior file) zero-shot,
with and without the step, on Set12 (Gaussian noise) and the low-photon sets.

- ``set12``: Set12 images 01-06 with Gaussian noise of each ``--sigmas`` (seed = index),
  denoised by the prior bound to the true sigma; BM3D (true sigma) beside it.
- ``fmd``, ``w2s``, ``twophoton``: the images of ``benchmarks/lowphoton.py``, the prior
  bound to each model group's estimated noise (as ``denoise --model pretrained``).

PSNR in dB on the 0-255 scale; seconds per image of denoising on the threads given.

    python benchmarks/wiener.py ../shared/data --kinds set12,fmd,twophoton,w2s \\
        --out benchmarks/results/wiener.json [--prior PRIOR.pt]
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

from napari_noise2score import denoise
from napari_noise2score.core import prior as P
from napari_noise2score.core.noise import NoiseParams, simulate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lowphoton as L  # noqa: E402

SET12 = ("01", "02", "03", "04", "05", "06")


def _timed(model, noisy: np.ndarray) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = denoise(noisy, model)
    return out, time.perf_counter() - t0


def set12_rows(root: Path, sigmas: list[float]) -> list[dict]:
    import bm3d

    rows = []
    for sigma in sigmas:
        for i, name in enumerate(SET12):
            clean = np.asarray(Image.open(root / "set12" / f"{name}.png").convert("L"))
            clean = clean.astype(np.float32)
            noisy = simulate(clean, NoiseParams("gaussian", sigma), seed=i)
            model = P.pretrained_model(sigma, 255.0)
            row = {"image": f"set12_{name}_sigma{sigma:g}"}
            for key, wiener in (("prior", False), ("prior + Wiener", True)):
                out, took = _timed(model.with_options(wiener=wiener), noisy)
                row[key] = {"psnr": P.psnr(clean, out), "seconds": took}
            row["bm3d"] = {"psnr": P.psnr(clean, bm3d.bm3d(noisy, sigma_psd=sigma))}
            rows.append(row)
            print(row, flush=True)
    return rows


def lowphoton_rows(root: Path, kind: str) -> list[dict]:
    rows = []
    for group in L.groups(root, kind):
        model, _ = P.bind(P.unbound_model(), group.noisy)
        for name, noisy, clean in zip(group.names, group.noisy, group.clean, strict=True):
            row = {"image": f"{kind}_{name}"}
            for key, wiener in (("prior", False), ("prior + Wiener", True)):
                out, took = _timed(model.with_options(wiener=wiener), noisy)
                row[key] = {**L.metrics(clean, out), "seconds": took}
            rows.append(row)
            print(row, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("--kinds", default="set12,fmd,twophoton,w2s")
    p.add_argument("--sigmas", default="25,50")
    p.add_argument("--prior", type=Path, help="another prior file, for both routes (default: "
                   "the shipped ones)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "results" / "wiener.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.prior is not None:
        P.PRIOR_FILES = dict.fromkeys(P.PRIOR_FILES, args.prior.resolve())
    results = {}
    for kind in args.kinds.split(","):
        if kind == "set12":
            results[kind] = set12_rows(args.data, [float(s) for s in args.sigmas.split(",")])
        else:
            results[kind] = lowphoton_rows(args.data, kind)
    table = {}
    for kind, rows in results.items():
        groups = sorted({r["image"].split("_sigma")[1] for r in rows}) if kind == "set12" \
            else [None]
        for g in groups:
            sub = [r for r in rows if g is None or r["image"].endswith(f"_sigma{g}")]
            key = kind if g is None else f"{kind} sigma {g}"
            table[key] = {m: round(float(np.mean([r[m]["psnr"] for r in sub])), 3)
                          for m in sub[0] if m != "image"}
            print(key, table[key])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    files = {route: str(path) for route, path in P.PRIOR_FILES.items()}
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "prior": files,
                                    "threads": args.threads, "table": table,
                                    "images": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
