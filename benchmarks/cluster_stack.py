"""Cluster benchmark for one large file: a stack denoised with ``denoise_file`` locally and
tile by tile on a dask LocalCluster (``client=``), with this process's memory growth.

Writes a synthetic uint16 TYX stack into FOLDER (Poisson-Gaussian noise), trains a tiny
model (width 8, depth 2) for a few steps, then denoises the stack: locally with torch on all
cores, locally with 1 torch thread, and on ``LocalCluster(n_workers=W, threads_per_worker=1,
processes=True)`` with 1 torch thread per task (cold: first tasks import torch on the
workers; warm: the steady state); the local runs follow one untimed warm-up run. Reports
seconds, tiles per second, this process's peak RSS growth during each run (the client holds
one plane and one tile at a time, whatever the stack size) and the largest difference
between the outputs. Prints JSON.

    python benchmarks/cluster_stack.py /tmp/n2s-stack --planes 16 --size 2048 --tile 512
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def rss_mib() -> float:
    """This process's resident memory now, in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def write_stack(path: Path, planes: int, size: int) -> Path:
    """Smooth patterns with Poisson-Gaussian noise (gain 4, read sigma 8), written plane by
    plane so the benchmark itself never holds the stack."""
    import tifffile

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    path.parent.mkdir(parents=True, exist_ok=True)

    def pages():
        for t in range(planes):
            clean = 400 + 300 * np.sin(9 * xx + t / 3) * np.cos(7 * yy - t / 5)
            counts = rng.poisson(np.maximum(clean, 0) / 4.0) * 4.0
            yield np.clip(counts + rng.normal(0, 8, clean.shape) + 100, 0, 65535).astype(
                np.uint16)

    tifffile.imwrite(path, pages(), shape=(planes, size, size), dtype=np.uint16,
                     photometric="minisblack", metadata={"axes": "TYX"})
    return path


def timed(run, tiles: int) -> dict:
    """Seconds, tiles per second and peak RSS growth (sampled every 50 ms) of ``run()``."""
    import threading

    base, peak, done = rss_mib(), [rss_mib()], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return {"seconds": round(seconds, 2), "tiles_per_s": round(tiles / seconds, 2),
            "rss_growth_mib": round(max(peak[0], rss_mib()) - base, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--planes", type=int, default=16)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import tifffile
    import torch
    from distributed import Client, LocalCluster

    from napari_noise2score import train
    from napari_noise2score.api import denoise_file
    from napari_noise2score.core.tiling import TiledDenoiser

    source = write_stack(args.folder / "stack.tif", args.planes, args.size)
    sample = tifffile.imread(source, key=0)[:512, :512]
    model = train(sample, noise="poisson-gaussian", gain=4.0, sigma=8.0, offset=100.0, tta=False,
                  width=8, depth=2, max_steps=30, max_seconds=60.0, patch_size=32,
                  batch_size=4, device="cpu")
    tiles = TiledDenoiser(model, (args.planes, args.size, args.size), "TYX",
                          tile=args.tile).n_tiles
    out = {name: args.folder / f"{name}.tif" for name in ("local", "local_1", "cluster")}
    result: dict = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads()},
        "stack": f"{args.planes} x {args.size} x {args.size} uint16 TIFF "
                 f"({args.planes * args.size**2 * 2 / 2**20:.0f} MiB)",
        "tile": args.tile, "tiles": tiles,
    }
    denoise_file(source, model, out["local"], tile=args.tile)  # warm-up: first-call costs
    result["local"] = timed(lambda: denoise_file(source, model, out["local"], tile=args.tile),
                            tiles)
    result["local_1_thread"] = timed(lambda: denoise_file(source, model, out["local_1"],
                                                          tile=args.tile, threads=1), tiles)
    start = time.perf_counter()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        result["cluster_start_s"] = round(time.perf_counter() - start, 2)
        for name in ("cluster_cold", "cluster"):
            result[name] = timed(lambda: denoise_file(source, model, out["cluster"],
                                                      tile=args.tile, threads=1,
                                                      client=client), tiles)
        result["cluster"]["workers"] = args.workers
    diffs = {}
    for t in range(args.planes):
        a, b, c = (tifffile.imread(out[n], key=t) for n in ("local", "local_1", "cluster"))
        diffs["cluster_vs_local_1_thread"] = max(diffs.get("cluster_vs_local_1_thread", 0.0),
                                                 float(np.abs(c - b).max()))
        diffs["cluster_vs_local"] = max(diffs.get("cluster_vs_local", 0.0),
                                        float(np.abs(c - a).max()))
    result["max_abs_difference"] = diffs
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
