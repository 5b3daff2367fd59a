"""Under load (issue 14, part 4): a batch of many small files and a many-plane stack, with
the resident memory sampled as the work goes (flat: no growth per file or plane) and the
open file descriptors counted before and after (no leak).

    python benchmarks/load.py [--files 1000] [--planes 100] [--size 64]

Prints one line per run and a JSON summary; exits 1 if memory grew or descriptors leaked.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import tifffile
import torch

from napari_noise2score.api import denoise_file
from napari_noise2score.batch import denoise_batch
from napari_noise2score.core.config import TrainConfig
from napari_noise2score.core.model import Noise2ScoreModel, build_network

#: Growth of the resident memory from the first tenth of the work to the end that still
#: counts as flat (allocator noise), in MiB.
FLAT_MIB = 64.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def tiny_model() -> Noise2ScoreModel:
    cfg = TrainConfig(noise="gaussian", sigma=20.0, width=8, depth=2, unshuffle=2,
                      max_steps=1, decorrelate=1, tta=False)
    torch.manual_seed(0)
    return Noise2ScoreModel(cfg, build_network(cfg).eval(), scale=255.0, final_sigma_a=0.03)


def noisy(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, shape).astype(np.uint8)


def summarise(name: str, samples: list[float], fds: tuple[int, int], seconds: float,
              count: int) -> dict:
    """Memory at the first tenth and at the end; the peak RSS of the process."""
    warm = samples[max(0, len(samples) // 10 - 1)]
    result = {"run": name, "items": count, "seconds": round(seconds, 1),
              "rss_after_first_tenth_mib": round(warm, 1), "rss_end_mib": round(samples[-1], 1),
              "growth_mib": round(samples[-1] - warm, 1),
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "fds_before": fds[0], "fds_after": fds[1]}
    result["flat"] = result["growth_mib"] < FLAT_MIB
    result["no_fd_leak"] = fds[1] <= fds[0]
    return result


def batch_run(folder: Path, model: Noise2ScoreModel, files: int, size: int) -> dict:
    """``files`` TIFFs of size x size pixels denoised as one batch."""
    src = folder / "many"
    src.mkdir()
    for i in range(files):
        tifffile.imwrite(src / f"f{i:04d}.tif", noisy((size, size), i))
    samples: list[float] = []
    before = open_fds()
    start = time.perf_counter()
    summary = denoise_batch([str(src)], model, folder / "many_out",
                            on_result=lambda r: samples.append(rss_mib()))
    seconds = time.perf_counter() - start
    assert len(summary.done) == files, summary.line()
    return summarise("batch of small files", samples, (before, open_fds()), seconds, files)


def stack_run(folder: Path, model: Noise2ScoreModel, planes: int, size: int) -> dict:
    """One stack of ``planes`` planes denoised tile by tile, plane by plane."""
    path = folder / "stack.tif"
    tifffile.imwrite(path, noisy((planes, size, size), 0), metadata={"axes": "ZYX"})
    samples: list[float] = []
    before = open_fds()
    start = time.perf_counter()
    denoise_file(path, model, folder / "stack_out.tif", tile=size,
                 progress=lambda done, total: samples.append(rss_mib()))
    seconds = time.perf_counter() - start
    assert tifffile.imread(folder / "stack_out.tif").shape == (planes, size, size)
    return summarise("stack of planes", samples, (before, open_fds()), seconds, planes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--planes", type=int, default=100)
    parser.add_argument("--size", type=int, default=64, help="pixels per side of each image")
    parser.add_argument("--stack-size", type=int, default=256, help="pixels per plane side")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = tiny_model()
    with tempfile.TemporaryDirectory() as tmp:
        tifffile.imwrite(Path(tmp) / "warm.tif", noisy((32, 32), 0))  # zarr's event loop
        denoise_file(Path(tmp) / "warm.tif", model, Path(tmp) / "warm_out.tif")
        results = [batch_run(Path(tmp), model, args.files, args.size),
                   stack_run(Path(tmp), model, args.planes, args.stack_size)]
    for r in results:
        print(f"{r['run']}: {r['items']} in {r['seconds']} s; RSS {r['rss_after_first_tenth_mib']}"
              f" -> {r['rss_end_mib']} MiB (peak {r['peak_rss_mib']}); open files "
              f"{r['fds_before']} -> {r['fds_after']}")
    print(json.dumps(results))
    return 0 if all(r["flat"] and r["no_fd_leak"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
