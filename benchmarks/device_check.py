"""The plugin's own training and denoising on one device, timed: a check of the CUDA (or MPS)
path that the CPU test suite cannot make.

On a clean image (a W2S clean FOV, 512 x 512, 8-bit) with synthetic noise, through the API
(``train``, ``denoise``) with ``device`` set: training from scratch and fine-tuning the
prior for ``--seconds`` each, Gaussian sigma 25 and Poisson-Gaussian (gain 4, read noise 8,
offset 10); then denoising a 2048 x 2048 plane with the trained model, twice (the first call
pays for the start). Prints and writes JSON: steps, steps per second, PSNR against the clean
image, seconds, and the device's name.

    python benchmarks/device_check.py IMAGE.png --device cuda --seconds 20 --out result.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from napari_noise2score import api
from napari_noise2score.core.prior import psnr


def noisy_pair(path: Path, kind: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """The clean image and a noisy capture of it, with the noise's parameters."""
    from PIL import Image

    clean = np.asarray(Image.open(path).convert("L")).astype(np.float32)
    rng = np.random.default_rng(0)
    if kind == "gaussian":
        params = {"noise": "gaussian", "sigma": 25.0}
        noisy = clean + 25.0 * rng.standard_normal(clean.shape)
    else:
        params = {"noise": "poisson-gaussian", "gain": 4.0, "sigma": 8.0, "offset": 10.0}
        noisy = 4.0 * rng.poisson(clean / 4.0) + 10.0 + 8.0 * rng.standard_normal(clean.shape)
        clean = clean + 10.0
    return clean, noisy.astype(np.float32), params


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def check(image: Path, device: str, seconds: float) -> dict:
    rows = []
    model = None
    for kind in ("gaussian", "poisson-gaussian"):
        clean, noisy, params = noisy_pair(image, kind)
        for init in ("scratch", "pretrained"):
            t0 = time.perf_counter()
            model = api.train(noisy, device=device, init=init, max_seconds=seconds, **params)
            synchronize(device)
            trained = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = api.denoise(noisy, model)
            synchronize(device)
            rows.append({"noise": kind, "init": init, "steps": model.steps,
                         "train_s": round(trained, 2),
                         "steps_per_s": round(model.steps / max(model.seconds, 1e-9), 1),
                         "denoise_s": round(time.perf_counter() - t0, 3),
                         "psnr_noisy": round(psnr(clean, noisy), 2),
                         "psnr": round(psnr(clean, out), 2)})
            print(rows[-1], flush=True)
    big = np.tile(noisy, (4, 4))  # 2048 x 2048, the last model's noise
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        api.denoise(big, model)
        synchronize(device)
        times.append(round(time.perf_counter() - t0, 3))
    name = (torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda")
            else platform.processor() or platform.machine())
    return {"device": device, "name": name, "torch": torch.__version__,
            "seconds_per_training": seconds, "rows": rows,
            "denoise_2048_s": times}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image", type=Path, help="a clean 8-bit image")
    p.add_argument("--device", default="cuda")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    result = check(a.image, a.device, a.seconds)
    text = json.dumps(result, indent=1)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
