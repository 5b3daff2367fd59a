"""One training-setting ablation on Set12: train on the 12 noisy images, report mean PSNR.

    python benchmarks/ablation.py ../shared/data/set12 '{"max_seconds": 60, "antithetic": false}'

The JSON holds TrainConfig fields; "noise", "sigma", "gain", "shape" pick the noise (in
[0, 255] units for sigma and gain, like the images). Prints one line per run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from napari_noise2score import denoise, train
from napari_noise2score.core.noise import NoiseParams, simulate


def main() -> None:
    folder, options = Path(sys.argv[1]), json.loads(sys.argv[2])
    clean = [np.asarray(Image.open(f), dtype=np.float64) for f in sorted(folder.glob("*.png"))]
    noise = NoiseParams(options.pop("noise", "gaussian"), options.pop("sigma", 25.0),
                        options.pop("gain", None), options.pop("shape", None))
    noisy = [simulate(c, noise, seed=i).astype(np.float32) for i, c in enumerate(clean)]
    t0 = time.perf_counter()
    model = train(noisy, noise=noise.model, sigma=noise.sigma, gain=noise.gain, tta=False,
                  shape=noise.shape, **options)
    train_s = time.perf_counter() - t0
    out = [denoise(n, model) for n in noisy]

    def psnr(c, x):
        return 10 * np.log10(255**2 / np.mean((np.clip(x, 0, 255) - c) ** 2))

    before = np.mean([psnr(c, n) for c, n in zip(clean, noisy, strict=True)])
    after = np.mean([psnr(c, o) for c, o in zip(clean, out, strict=True)])
    print(f"{sys.argv[2]}: {model.steps} steps in {train_s:.0f} s; "
          f"mean PSNR {before:.2f} -> {after:.2f} dB")


if __name__ == "__main__":
    main()
