"""FMD confocal benchmark: real noisy captures vs their 50-capture averages.

For each image, in one run: the noisy input; napari-noise2score with ``noise="auto"`` (noise
estimated from the image, then at most ``--seconds`` of training on that one image), scored
with every mixed-noise Tweedie mode, with and without test-time augmentation, from the
same trained model; generalized Anscombe + BM3D with the same estimated parameters;
Noise2Void (CAREamics, its own venv, same time budget).
PSNR/SSIM on the uint8 scale (outputs clipped to [0, 255]), seconds, peak memory.

    python benchmarks/fmd.py ../shared/data/fmd_confocal --seconds 120 \
        --peers-python /work/peers-venv/bin/python --out benchmarks/results/fmd.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_noise2score import denoise, estimate_noise, train
from napari_noise2score.core.device import cpu_threads
from napari_noise2score.core.noise import MIXED_MODES

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))
from gat_bm3d import gat_bm3d  # noqa: E402


def metrics(clean: np.ndarray, x: np.ndarray) -> dict[str, float]:
    x = np.clip(np.asarray(x, np.float64), 0, 255)
    return {"psnr": float(peak_signal_noise_ratio(clean, x, data_range=255)),
            "ssim": float(structural_similarity(clean, x, data_range=255))}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_n2s(noisy: np.ndarray, clean: np.ndarray, seconds: float, seed: int) -> dict:
    t0 = time.perf_counter()
    model = train(noisy, noise="auto", max_seconds=seconds, seed=seed)
    train_s = time.perf_counter() - t0
    rows = {}
    for mode in MIXED_MODES:
        for tta in (True, False):
            t1 = time.perf_counter()
            out = denoise(noisy, model.with_options(mixed_mode=mode, tta=tta))
            took = train_s + time.perf_counter() - t1
            key = f"n2s[{mode}]" + ("" if tta else "[no tta]")
            rows[key] = {**metrics(clean, out), "seconds": took}
    rows["_model"] = {"steps": model.steps, "train_seconds": train_s,
                      "default_mode": model.config.mixed_mode,
                      "decorrelate": model.config.decorrelate}
    return rows


def run_n2v(peers_python: str, noisy_path: Path, clean: np.ndarray, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "n2v.tif"
        t0 = time.perf_counter()
        proc = subprocess.run(
            [peers_python, str(HERE / "peers" / "n2v_careamics.py"), str(noisy_path), str(out),
             "--max-seconds", str(seconds)], capture_output=True, text=True)
        took = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
        return {**metrics(clean, tifffile.imread(out)), "seconds": took}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="folder with noisy/ and clean/ TIFFs")
    p.add_argument("--seconds", type=float, default=120.0, help="training budget per image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images", nargs="*", help="image names (default: all)")
    p.add_argument("--peers-python", help="python of the peers venv (Noise2Void); omit to skip")
    p.add_argument("--out", type=Path, default=HERE / "results" / "fmd.json")
    args = p.parse_args(argv)
    torch.set_num_threads(cpu_threads())

    names = sorted(f.name for f in (args.data / "noisy").glob("*.tif"))
    if args.images:
        names = [n for n in names if Path(n).stem in args.images or n in args.images]
    results = {}
    for name in names:
        noisy = tifffile.imread(args.data / "noisy" / name)
        clean = tifffile.imread(args.data / "clean" / name).astype(np.float64)
        est = estimate_noise(noisy)
        row = {"estimate": est.to_dict(), "noisy": {**metrics(clean, noisy), "seconds": 0.0}}
        print(f"{name}: {est.describe()}", flush=True)
        row.update(run_n2s(noisy, clean, args.seconds, args.seed))
        t0 = time.perf_counter()
        bm = gat_bm3d(noisy.astype(np.float64), est.gain, est.sigma, est.offset)
        row["gat+bm3d"] = {**metrics(clean, bm), "seconds": time.perf_counter() - t0}
        if args.peers_python:
            row["n2v"] = run_n2v(args.peers_python, args.data / "noisy" / name, clean,
                                 args.seconds)
        results[Path(name).stem] = row
        print("  " + ", ".join(f"{k} {v['psnr']:.2f}" for k, v in row.items()
                               if isinstance(v, dict) and "psnr" in v), flush=True)

    methods = [k for k in next(iter(results.values())) if k not in ("estimate", "_model")]
    mean = {}
    for m in methods:
        ok = [r[m] for r in results.values() if "psnr" in r.get(m, {})]
        if len(ok) == len(results):
            mean[m] = {k: float(np.mean([o[k] for o in ok])) for k in ("psnr", "ssim", "seconds")}
    report = {"command": " ".join(sys.argv), "seconds_per_image": args.seconds,
              "machine": {"cpu_threads": cpu_threads(), "python": platform.python_version(),
                          "torch": torch.__version__},
              "peak_rss_mib": peak_rss_mib(), "images": results, "mean": mean}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print("\nmethod                         PSNR    SSIM   seconds")
    for m, v in mean.items():
        print(f"{m:28s} {v['psnr']:7.2f} {v['ssim']:7.4f} {v['seconds']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
