"""Numerical equivalence check for refactors: fixed seeds, fixed steps, a tiny network.

Trains and denoises one synthetic image per noise model and route (Gaussian, Poisson,
Gamma, Poisson-Gaussian in counts with every mixed mode and on the Anscombe route, noise
"auto", correlated noise on 2x2 sub-images), tiles, runs the blind search, the score
estimate and the noise estimate, and saves every result to one .npz file; with ``--against``
it compares with an earlier run and prints the largest absolute difference per case.

    python benchmarks/equivalence.py --out /tmp/eq_main.npz
    python benchmarks/equivalence.py --out /tmp/eq_new.npz --against /tmp/eq_main.npz
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from napari_noise2score.core.blind import blind_search, score_estimate
from napari_noise2score.core.config import TrainConfig
from napari_noise2score.core.estimation import estimate_noise
from napari_noise2score.core.inference import denoise_array
from napari_noise2score.core.noise import NoiseParams, simulate
from napari_noise2score.core.tiling import TiledDenoiser
from napari_noise2score.core.training import train_model
from napari_noise2score.io.lazy import training_planes

TINY = {"width": 4, "depth": 1, "unshuffle": 1, "patch_size": 32, "batch_size": 4,
        "max_seconds": None, "max_steps": 200, "init": "scratch", "device": "cpu",
        "tta": False}


def clean_image(size: int = 96, planes: int = 1) -> np.ndarray:
    y, x = np.mgrid[:size, :size] / size
    base = 20 + 60 * (x > 0.4) + 40 * np.sin(6 * y) ** 2 + 30 * ((x - 0.7) ** 2 + (y - 0.3) ** 2
                                                                   < 0.03)
    return np.stack([base * (1 + 0.1 * k) for k in range(planes)]).squeeze()


def correlated(clean: np.ndarray, sigma: float) -> np.ndarray:
    rng = np.random.default_rng(5)
    n = rng.standard_normal(clean.shape)
    n = (n + np.roll(n, 1, 0) + np.roll(n, 1, 1) + np.roll(n, (1, 1), (0, 1))) / 2
    return clean + sigma * n


def run() -> dict[str, np.ndarray]:
    torch.set_num_threads(1)
    out: dict[str, np.ndarray] = {}
    clean = clean_image()
    stack = clean_image(planes=3)
    cases = {
        "gaussian": (NoiseParams("gaussian", sigma=10.0), {}),
        "poisson": (NoiseParams("poisson", gain=2.0), {"transform": "none"}),
        "poisson_anscombe": (NoiseParams("poisson", gain=2.0), {"transform": "anscombe"}),
        "gamma": (NoiseParams("gamma", shape=8.0), {}),
        "pg": (NoiseParams("poisson-gaussian", gain=2.0, sigma=3.0), {"transform": "none"}),
        "pg_anscombe": (NoiseParams("poisson-gaussian", gain=2.0, sigma=3.0),
                        {"transform": "anscombe"}),
        "auto": (NoiseParams("poisson-gaussian", gain=2.0, sigma=3.0), {"noise": "auto"}),
    }
    models = {}
    for name, (noise, extra) in cases.items():
        noisy = simulate(clean, noise, seed=1)
        values = {"noise": noise.model, "sigma": noise.sigma, "gain": noise.gain,
                  "shape": noise.shape, **TINY, **extra}
        if values["noise"] == "auto":
            values.update(sigma=None, gain=None, shape=None)
        model = train_model([noisy], TrainConfig(**values))
        models[name] = (model, noisy)
        out[f"{name}/denoised"] = denoise_array(model, noisy)
        out[f"{name}/tiled_fn"] = denoise_array(model, noisy, tile=32, overlap=16)
        out[f"{name}/tiled_default"] = denoise_array(model, noisy, tile=32)
        out[f"{name}/scale"] = np.array([model.scale, model.final_sigma_a])
        est = estimate_noise(noisy)
        out[f"{name}/estimate"] = np.array(
            [np.nan if v is None else v for v in (est.sigma, est.gain, est.shape, est.offset,
                                                  est.correlation, est.quality)])
    model, noisy = models["pg"]
    for mode in ("first-order", "affine"):
        out[f"pg_{mode}/denoised"] = denoise_array(model.with_options(mixed_mode=mode), noisy)
    model, noisy = models["gaussian"]
    out["gaussian_tta/denoised"] = denoise_array(model.with_options(tta=True), noisy)
    noisy_stack = simulate(stack, NoiseParams("gaussian", sigma=10.0), seed=2)
    out["stack/denoised"] = denoise_array(model, noisy_stack, axes="ZYX")
    tiler = TiledDenoiser(model, noisy_stack.shape, "ZYX", tile=40)
    out["stack/tiled"] = np.stack(list(tiler.iter_planes(noisy_stack)))
    for name in ("gaussian", "poisson", "gamma", "pg"):
        model, noisy = models[name]
        r = blind_search(model, [noisy])
        out[f"{name}/blind_search"] = np.array([r.value, *r.quality])
    for name in ("gaussian", "gamma"):
        model, noisy = models[name]
        out[f"{name}/score_estimate"] = np.array([score_estimate(model, [noisy]).value])
    big = simulate(clean_image(planes=40)[:, :, :90], NoiseParams("gaussian", sigma=10.0), 3)
    out["sample/training_planes"] = training_planes(big, "ZYX", max_bytes=4 * 50 * 60 * 7)
    est = estimate_noise(big)
    out["sample/estimate"] = np.array([est.sigma, est.n_windows, est.quality])
    r = blind_search(models["gaussian"][0], list(big), max_pixels=30_000)
    out["sample/blind_search"] = np.array([r.value, r.pixels, *r.quality])
    noisy = correlated(clean, 8.0)
    model = train_model([noisy], TrainConfig(noise="gaussian", sigma=8.0, decorrelate=2,
                                             **TINY))
    out["correlated/denoised"] = denoise_array(model, noisy)
    est = estimate_noise(noisy)
    out["correlated/estimate"] = np.array([est.sigma, est.correlation, est.stride])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--against")
    args = parser.parse_args(argv)
    results = run()
    np.savez(args.out, **results)
    if not args.against:
        return 0
    before = np.load(args.against)
    worst = 0.0
    for key in sorted(set(before.files) | set(results)):
        if key not in results or key not in before.files:
            print(f"{key:32s} missing on one side")
            worst = np.inf
            continue
        a, b = np.asarray(before[key], np.float64), np.asarray(results[key], np.float64)
        diff = np.inf if a.shape != b.shape else float(np.nanmax(np.abs(a - b), initial=0.0))
        worst = max(worst, diff)
        print(f"{key:32s} max |diff| = {diff:.3g}")
    print(f"worst: {worst:.3g}")
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
