"""Blind Tweedie on Set12: is the noise parameter found at test time the true one?

For each setting the 12 clean images (scaled to [0, 1]) get noise with fixed seeds. Models
are trained for a fixed number of steps (default CPU network) with the true parameter and
with deliberately wrong ones (0.7x, 1.4x). For each model: the grid search (criterion Q of
docs/algorithm.md, one value for the whole set, and one per image), the score-based
estimate and the classical estimate (core/estimation.py); then the mean PSNR of the 12
images denoised with the true parameter, the training parameter and each estimate.

    python benchmarks/blind.py ../shared/data/set12 --steps 400 --out benchmarks/results/blind.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from napari_noise2score import train
from napari_noise2score.core.blind import (
    blind_search,
    default_grid,
    scaled_scores,
    score_estimate,
    sweep,
)
from napari_noise2score.core.estimation import estimate_noise
from napari_noise2score.core.noise import NoiseParams, simulate, tweedie

sys.path.insert(0, str(Path(__file__).resolve().parent))
from set12 import load_set12  # noqa: E402

SETTINGS = {
    "gaussian25": NoiseParams("gaussian", sigma=25 / 255),
    "gaussian50": NoiseParams("gaussian", sigma=50 / 255),
    "gamma100": NoiseParams("gamma", shape=100.0),
}


def psnr(clean: np.ndarray, x: np.ndarray) -> float:
    x = np.clip(x.astype(np.float64), 0, 1)
    return float(10 * np.log10(1.0 / np.mean((x - clean) ** 2)))


def mean_psnr(model, clean, ys, scores, parameter: str, value: float) -> float:
    """Mean PSNR of the set denoised with ``parameter = value`` (scores precomputed)."""
    scaled = replace(model.noise_params(), **{parameter: value}).rescaled(model.scale)
    out = []
    for c, y, s in zip(clean, ys, scores, strict=True):
        x = tweedie(y, s, scaled, model.smoothing, model.config.mixed_mode)
        out.append(psnr(c, model.from_scaled(x)))
    return float(np.mean(out))


def classical(noisy, noise: NoiseParams) -> float | None:
    est = estimate_noise(noisy)
    return est.sigma if noise.model == "gaussian" else est.shape


def run_model(name, noise, clean, noisy, factor, steps, seed) -> dict:
    parameter = noise.kind.searched
    true = getattr(noise, parameter)
    trained = true * factor
    t0 = time.perf_counter()
    model = train(noisy, noise=noise.model, **{parameter: trained}, max_seconds=None,
                  max_steps=steps, seed=seed, device="cpu")
    train_s = time.perf_counter() - t0
    search = blind_search(model, noisy)
    score = score_estimate(model, noisy)
    ys, scores = scaled_scores(model, noisy, 1024, None)
    grid = default_grid(model, parameter)
    per_image = [float(grid[np.nanargmin(sweep(model, parameter, grid, [y], [s]))])
                 for y, s in zip(ys, scores, strict=True)]
    per_image_psnr = float(np.mean([
        mean_psnr(model, [c], [y], [s], parameter, v)
        for c, y, s, v in zip(clean, ys, scores, per_image, strict=True)]))
    est = classical(noisy, noise)
    prior = None
    if est is not None:  # the search restricted to the classical estimate +-25 %
        narrow = est * np.geomspace(0.8, 1.25, 21)
        narrow = narrow[narrow > 1.0] if parameter == "shape" else narrow
        prior = float(narrow[np.nanargmin(sweep(model, parameter, narrow, ys, scores))])
    row = {
        "setting": name, "parameter": parameter, "true": true, "trained": trained,
        "train_factor": factor, "steps": model.steps, "train_s": train_s,
        "search": search.value, "search_s": search.seconds,
        "search_per_image": per_image, "score": score.value, "score_s": score.seconds,
        "classical": est,
        "psnr_noisy": float(np.mean([psnr(c, n) for c, n in zip(clean, noisy, strict=True)])),
        "psnr_true": mean_psnr(model, clean, ys, scores, parameter, true),
        "psnr_trained": mean_psnr(model, clean, ys, scores, parameter, trained),
        "psnr_search": mean_psnr(model, clean, ys, scores, parameter, search.value),
        "psnr_search_per_image": per_image_psnr,
        "psnr_score": mean_psnr(model, clean, ys, scores, parameter, score.value),
    }
    if est is not None:
        row["psnr_classical"] = mean_psnr(model, clean, ys, scores, parameter, est)
        row["search_prior"] = prior
        row["psnr_search_prior"] = mean_psnr(model, clean, ys, scores, parameter, prior)
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict]) -> str:
    """Parameters in the benchmark's units (Gaussian sigma x 255, Gamma k); PSNR in dB."""
    head = ("setting     train   search  s/img(med)  score  classic  prior |  PSNR: true  "
            "trained  search  per-img  score  classic  prior")
    lines, nan = [head, "-" * len(head)], float("nan")
    for r in rows:
        u = 255.0 if r["parameter"] == "sigma" else 1.0
        lines.append(
            f"{r['setting']:<11} {r['trained'] * u:6.1f} {r['search'] * u:7.1f} "
            f"{np.median(r['search_per_image']) * u:10.1f} {r['score'] * u:6.1f} "
            f"{(r['classical'] or nan) * u:7.1f} {(r.get('search_prior') or nan) * u:6.1f} | "
            f"{r['psnr_true']:10.2f} "
            f"{r['psnr_trained']:8.2f} {r['psnr_search']:7.2f} {r['psnr_search_per_image']:8.2f}"
            f" {r['psnr_score']:6.2f} {r.get('psnr_classical', nan):7.2f}"
            f" {r.get('psnr_search_prior', nan):6.2f}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="folder of the Set12 PNG files")
    ap.add_argument("--steps", type=int, default=400, help="training steps per model")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/blind.json"))
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--factors", nargs="+", type=float, default=[1.0, 0.7, 1.4],
                    help="training parameter / true parameter")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    clean = load_set12(args.data)
    if clean is None:
        return 2
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.settings:
        noise = SETTINGS[name]
        noisy = [simulate(c, noise, seed=args.seed + i).astype(np.float32)
                 for i, c in enumerate(clean)]
        for factor in args.factors:
            rows.append(run_model(name, noise, clean, noisy, factor, args.steps, args.seed))
            args.out.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows},
                                           indent=1))
    print(table(rows))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
