"""Real two-photon time-lapse with no clean reference (``twophoton_timelapse/noisy``, 10
frames): each denoised frame is compared with the mean of the *other* nine noisy frames.

The scene barely moves between frames (noisy frame-to-frame MSE about 2 sigma^2 at every
lag), and the other frames' noise is independent of this frame's, so
E|x_t - mean_others|^2 = MSE(x_t, clean) + (noise of the mean, about sigma^2 / 9) + motion:
the same added term for every method, so differences in this "leave-one-out PSNR" rank
methods as the unknown true PSNR would (and understate the gaps). An estimate of the true
PSNR is given beside it: the added term is the noisy frame's leave-one-out MSE less its own
noise variance (the estimated model's gain * (frame - offset) + sigma^2, averaged over the
pixels; clipping ignored), subtracted from every method's. Methods, in one run:
the noisy frame, the shipped prior bound to the stack's estimated noise (no training),
``train(noise="auto")`` for ``--seconds`` on the stack, and GAT+BM3D with the parameters
that model denoises each frame with.

    python benchmarks/timelapse.py ../shared/data --seconds 120 \\
        --out benchmarks/results/timelapse.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_noise2score import denoise, train
from napari_noise2score.core import prior
from napari_noise2score.core.planewise import config_for_plane
from napari_noise2score.core.route import describe_route

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from lowphoton import _read, peer_bm3d  # noqa: E402


def mse(x: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean((x.astype(np.float64) - reference) ** 2))


def noise_variance(frame: np.ndarray, cfg) -> float:
    """The mean noise variance of ``frame`` under the estimated Poisson-Gaussian model."""
    level = np.maximum(frame.astype(np.float64) - cfg.offset, 0.0)
    return float(np.mean((cfg.gain or 0.0) * level) + (cfg.sigma or 0.0) ** 2)


def to_psnr(mse: float) -> float:
    return 10.0 * np.log10(255.0**2 / max(mse, 1e-12))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results" / "timelapse.json")
    args = p.parse_args(argv)
    folder = args.data / "twophoton_timelapse" / "noisy"
    paths = sorted(folder.glob("*.png"), key=lambda f: int(f.stem))
    if not paths:
        p.error(f"{folder}: no frames (*.png) there")
    torch.set_num_threads(args.threads)
    frames = np.stack([_read(f) for f in paths])
    stack = frames.astype(np.float64)
    t0 = time.perf_counter()
    auto = train(list(frames), noise="auto", seed=args.seed, max_seconds=args.seconds)
    train_s = time.perf_counter() - t0
    cfg = auto.config
    print(f"{len(frames)} frames {frames.shape[1:]}: {cfg.noise} gain {cfg.gain} sigma "
          f"{cfg.sigma} offset {cfg.offset:.3g}; {describe_route(cfg)}; {auto.steps} steps "
          f"in {train_s:.0f} s", flush=True)
    t0 = time.perf_counter()
    zero_shot, _ = prior.bind(prior.unbound_model(), list(frames))
    bind_s = time.perf_counter() - t0
    rows = []
    for t, frame in enumerate(frames):
        others = np.delete(stack, t, axis=0).mean(axis=0)  # this frame's reference
        own = config_for_plane(cfg, frame)  # the noise n2s denoises the frame with
        errors = {"noisy": mse(frame, others)}
        seconds = {"noisy": 0.0}
        for label, model, share in (("prior zero-shot", zero_shot, bind_s / len(frames)),
                                    ("n2s auto", auto, train_s / len(frames))):
            s0 = time.perf_counter()
            errors[label] = mse(denoise(frame, model), others)
            seconds[label] = share + time.perf_counter() - s0
        s0 = time.perf_counter()
        errors["gat+bm3d"] = mse(peer_bm3d(frame, own), others)
        seconds["gat+bm3d"] = time.perf_counter() - s0
        added = errors["noisy"] - noise_variance(frame, own)
        row: dict = {"frame": paths[t].stem}
        for label, err in errors.items():
            row[label] = {"psnr": to_psnr(err), "psnr_estimated": to_psnr(err - added),
                          "seconds": seconds[label]}
        rows.append(row)
        print(f"  frame {row['frame']}: " + ", ".join(
            f"{k} {v['psnr']:.2f}" for k, v in row.items() if isinstance(v, dict)), flush=True)
    methods = [k for k in rows[0] if k != "frame"]
    table = {m: {"psnr": round(float(np.mean([r[m]["psnr"] for r in rows])), 3),
                 "psnr_estimated": round(float(np.mean([r[m]["psnr_estimated"]
                                                        for r in rows])), 3),
                 "seconds": round(float(np.mean([r[m]["seconds"] for r in rows])), 2)}
             for m in methods}
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join(sys.argv), "table": table, "frames": rows,
        "model": {"noise": cfg.noise, "gain": cfg.gain, "sigma": cfg.sigma,
                  "offset": cfg.offset, "route": describe_route(cfg), "steps": auto.steps,
                  "train_seconds": train_s}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
