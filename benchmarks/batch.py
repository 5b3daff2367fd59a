"""Batch benchmark: files per second for a folder of images, locally and on a dask
LocalCluster, with the peak resident memory of each process that denoised.

Writes N synthetic 512 x 512 uint16 TIFFs (Poisson-Gaussian noise) into FOLDER, trains a
tiny model (width 8, depth 2) for a few steps, then denoises the folder with
``denoise_batch``: locally (one file at a time, torch on all cores) and on a
``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``. Each run writes to a
fresh output folder; the cluster's start-up time is reported apart. Prints JSON.

    python benchmarks/batch.py /tmp/n2s-batch --files 24
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import time
from pathlib import Path

import numpy as np

SIZE = 512


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: VmHWM (Linux; reset at exec, unlike
    ru_maxrss, which a spawned worker inherits from its parent), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_images(folder: Path, n: int) -> list[Path]:
    """Smooth patterns with Poisson-Gaussian noise (gain 4, read sigma 8)."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    paths = []
    for i in range(n):
        clean = 400 + 300 * np.sin(9 * xx + i / 3) * np.cos(7 * yy - i / 5)
        counts = rng.poisson(np.maximum(clean, 0) / 4.0) * 4.0
        noisy = np.clip(counts + rng.normal(0, 8, clean.shape) + 100, 0, 65535)
        path = folder / f"img{i:03d}.tif"
        tifffile.imwrite(path, noisy.astype(np.uint16))
        paths.append(path)
    return paths


def timed_batch(raw: Path, model, out: Path, **kwargs) -> dict:
    from napari_noise2score.batch import denoise_batch

    shutil.rmtree(out, ignore_errors=True)
    summary = denoise_batch([raw], model, out, **kwargs)
    assert summary.ok and not summary.skipped, summary.to_dict()
    n = len(summary.done)
    return {"files": n, "seconds": round(summary.seconds, 2),
            "files_per_s": round(n / summary.seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import torch
    from distributed import Client, LocalCluster

    from napari_noise2score import train

    raw = args.folder / "raw"
    paths = write_images(raw, args.files)
    import tifffile

    model = train(tifffile.imread(paths[0]), noise="poisson-gaussian", gain=4.0, sigma=8.0,
                  tta=False, offset=100.0, width=8, depth=2, max_steps=30, max_seconds=60.0,
                  patch_size=32, batch_size=4, device="cpu")
    model_file = model.save(args.folder / "model.n2s")

    result: dict = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads()},
        "images": f"{args.files} x {SIZE} x {SIZE} uint16 TIFF",
    }
    rss_before = peak_rss_mib()
    result["local"] = timed_batch(raw, model_file, args.folder / "out_local")
    result["local"]["peak_rss_mib"] = round(peak_rss_mib(), 1)
    result["local"]["peak_rss_before_mib"] = round(rss_before, 1)

    start = time.perf_counter()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        result["cluster_start_s"] = round(time.perf_counter() - start, 2)
        base = client.run(peak_rss_mib)
        result["cluster_cold"] = timed_batch(raw, model_file, args.folder / "out_cluster",
                                             client=client)
        result["cluster"] = timed_batch(raw, model_file, args.folder / "out_cluster",
                                        client=client)
        peaks = client.run(peak_rss_mib)
        result["cluster"]["workers"] = args.workers
        result["cluster"]["peak_rss_mib_per_worker"] = {
            addr: round(v, 1) for addr, v in peaks.items()}
        result["cluster"]["rss_at_start_mib_per_worker"] = {
            addr: round(v, 1) for addr, v in base.items()}  # before any task: imports only
        result["cluster"]["worker_torch_threads"] = list(
            client.run(torch.get_num_threads).values())
    for name in ("out_local", "out_cluster"):
        a = sorted((args.folder / name).iterdir())
        result.setdefault("outputs", {})[name] = len(a)
    local_files = sorted((args.folder / "out_local").iterdir())
    diff = max(float(np.abs(tifffile.imread(p) - tifffile.imread(
        args.folder / "out_cluster" / p.name)).max()) for p in local_files)
    result["max_abs_difference_local_vs_cluster"] = diff
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
