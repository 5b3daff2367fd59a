"""Set12 benchmark: self-supervised Noise2Score vs BM3D on synthetic noise, same noisy images.

For each noise setting the 12 clean images (scaled to [0, 1]) get noise with fixed seeds
(never clipped); one model is trained on the 12 noisy images themselves for a time budget,
then each image is denoised. BM3D gets the true noise level (Anscombe + BM3D + exact unbiased
inverse for Poisson, log + BM3D for Gamma). Writes a JSON file and a budget-vs-PSNR plot.

    python benchmarks/set12.py ../shared/data/set12 --out benchmarks/results/set12.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.special import polygamma, psi
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_noise2score import denoise, train
from napari_noise2score.core.device import cpu_threads
from napari_noise2score.core.noise import NoiseParams, simulate

SETTINGS = {
    "gaussian25": NoiseParams("gaussian", sigma=25 / 255),
    "gaussian50": NoiseParams("gaussian", sigma=50 / 255),
    "poisson0.01": NoiseParams("poisson", gain=0.01),
    "gamma100": NoiseParams("gamma", shape=100.0),
}


def load_set12(folder: Path) -> list[np.ndarray] | None:
    """The clean Set12 images scaled to [0, 1] (None, with a message, when there are none)."""
    files = sorted(folder.glob("*.png"))
    if not files:
        print(f"no PNG files in {folder}", file=sys.stderr)
        return None
    return [np.asarray(Image.open(f), dtype=np.float64) / 255 for f in files]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def metrics(clean: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    x = np.clip(x.astype(np.float64), 0, 1)
    return (peak_signal_noise_ratio(clean, x, data_range=1.0),
            structural_similarity(clean, x, data_range=1.0))


def bm3d_peer(noisy: np.ndarray, noise: NoiseParams) -> np.ndarray:
    import bm3d

    if noise.model == "gaussian":
        return bm3d.bm3d(noisy, sigma_psd=noise.sigma)
    if noise.model == "poisson":
        counts = noisy / noise.gain
        a = 2 * np.sqrt(counts + 3 / 8)
        scale = a.max()
        d = bm3d.bm3d(a / scale, sigma_psd=1 / scale) * scale
        d = np.maximum(d, 0.8)
        s = np.sqrt(1.5)  # Makitalo-Foi closed-form exact unbiased inverse
        inv = 0.25 * d**2 + 0.25 * s / d - 11 / 8 / d**2 + 5 / 8 * s / d**3 - 1 / 8
        return np.maximum(inv, 0) * noise.gain
    # Gamma: homomorphic, log(y) = log(x) + log(g), E log g = psi(k) - log k, Var = psi'(k)
    k = noise.shape
    logy = np.log(np.maximum(noisy, 1e-6)) - (psi(k) - np.log(k))
    lo, hi = logy.min(), logy.max()
    d = bm3d.bm3d((logy - lo) / (hi - lo), sigma_psd=np.sqrt(polygamma(1, k)) / (hi - lo))
    return np.exp(d * (hi - lo) + lo)


def run_setting(name, noise, clean, budget, seed, with_bm3d, tta=False):
    noisy = [simulate(c, noise, seed=seed + i).astype(np.float32) for i, c in enumerate(clean)]
    t0 = time.perf_counter()
    model = train(noisy, noise=noise.model, sigma=noise.sigma, gain=noise.gain, tta=tta,
                  shape=noise.shape, max_seconds=budget, seed=seed)
    train_s = time.perf_counter() - t0
    rows, infer_s = [], 0.0
    for i, (c, n) in enumerate(zip(clean, noisy, strict=True)):
        t0 = time.perf_counter()
        out = denoise(n, model)
        infer_s += time.perf_counter() - t0
        row = {"image": i + 1, "noisy": metrics(c, n), "noise2score": metrics(c, out)}
        if with_bm3d:
            t0 = time.perf_counter()
            b = bm3d_peer(n.astype(np.float64), noise)
            row["bm3d_seconds"] = time.perf_counter() - t0
            row["bm3d"] = metrics(c, b)
        rows.append(row)
        print(name, budget, row, flush=True)
    pixels = sum(c.size for c in clean)
    return {
        "setting": name, "budget_s": budget, "train_s": train_s, "steps": model.steps,
        "infer_s": infer_s, "infer_mpix_per_s": pixels / infer_s / 1e6, "rows": rows,
        "peak_rss_mib": peak_rss_mib(),
        "config": model.config.to_dict(),
    }


def throughput(model_budget: float = 5.0, size: int = 2048) -> dict:
    """Inference speed on one large plane (what tiles of a big image see)."""
    rng = np.random.default_rng(0)
    img = rng.random((size, size), dtype=np.float32)
    model = train(img[:256, :256], noise="gaussian", sigma=0.1, max_seconds=model_budget,
                  tta=False)
    denoise(img[:512, :512], model)  # warm-up
    t0 = time.perf_counter()
    denoise(img, model)
    dt = time.perf_counter() - t0
    return {"size": size, "seconds": dt, "mpix_per_s": size * size / dt / 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="folder of the Set12 PNG files")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/set12.json"))
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds per setting")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--sweep", nargs="*", type=float, default=[30.0, 600.0],
                    help="extra budgets for gaussian25 (the PSNR-vs-budget plot)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tta", action="store_true",
                    help="test-time augmentation (off for the figures in docs/benchmarks.md, "
                    "measured before it became the default)")
    args = ap.parse_args()
    clean = load_set12(args.data)
    if clean is None:
        return 2
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": cpu_threads(),
                    "torch": torch.__version__, "cuda": torch.cuda.is_available()},
        "command": " ".join(sys.argv), "runs": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result["throughput"] = throughput()
    for name in args.settings:
        result["runs"].append(run_setting(name, SETTINGS[name], clean, args.budget, args.seed,
                                          with_bm3d=True, tta=args.tta))
        args.out.write_text(json.dumps(result, indent=1))
    for budget in args.sweep:
        result["runs"].append(run_setting("gaussian25", SETTINGS["gaussian25"], clean, budget,
                                          args.seed, with_bm3d=False, tta=args.tta))
        args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
