"""A second network pass, measured (development): the shipped output (prior, zero-shot, 8-fold
average, Wiener step) denoised again by the prior told a lower noise std ``c`` x sigma, then
the Wiener step again on the noisy image with that as its pilot, and the mean of the first
and second Wiener outputs. Set12 (12 images) with Gaussian noise of ``--sigma`` (seed =
index); PSNR dB per image and the mean.

    python benchmarks/second_pass.py ../shared/data --sigma 25 --factors 0.25,0.4 \\
        --out benchmarks/results/second_pass_set12.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from napari_noise2score import denoise
from napari_noise2score.core import prior as P
from napari_noise2score.core import wiener
from napari_noise2score.core.noise import NoiseParams, simulate


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("--sigma", type=float, default=25.0)
    p.add_argument("--factors", default="0.25,0.4")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sigma, factors = args.sigma, [float(c) for c in args.factors.split(",")]
    first = P.pretrained_model(sigma, 255.0).with_options(wiener=True, tta=True)
    rows = []
    for i in range(12):
        clean = np.asarray(Image.open(args.data / "set12" / f"{i + 1:02d}.png").convert("L"),
                           np.float32)
        noisy = simulate(clean, NoiseParams("gaussian", sigma), seed=i)
        w1 = denoise(noisy, first)
        row = {"image": f"{i + 1:02d}", "shipped": psnr(w1, clean)}
        for c in factors:
            again = P.pretrained_model(max(c * sigma, 5.0), 255.0).with_options(
                wiener=False, tta=True)
            x1 = denoise(w1, again)
            with torch.inference_mode():
                w2 = wiener.refine(torch.from_numpy(noisy / 255.0).float(),
                                   torch.from_numpy(x1 / 255.0).float(), sigma / 255.0,
                                   shrink=wiener.SHRINK_GAUSSIAN).numpy() * 255.0
            row.update({f"pass2_{c:g}": psnr(x1, clean), f"wiener2_{c:g}": psnr(w2, clean),
                        f"mean_{c:g}": psnr(0.5 * (w1 + w2), clean)})
        rows.append(row)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()},
              flush=True)
    table = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0] if k != "image"}
    print(table)
    if args.out:
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "table": table,
                                        "images": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
