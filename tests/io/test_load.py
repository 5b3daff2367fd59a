"""Issue 14, part 4, light: a batch of small files and a many-plane stack keep memory flat
and leave no file open (the full-size run: ``benchmarks/load.py``)."""

from __future__ import annotations

import os

import numpy as np
import psutil
import tifffile

from helpers import record_case, tiny_model
from napari_noise2score.api import denoise_file
from napari_noise2score.batch import denoise_batch

FLAT_MIB = 64.0


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> float:
    return psutil.Process().memory_info().rss / 2**20


def warm_up(tmp_path, model) -> None:
    """One file denoised first: zarr's event loop (an epoll and a socket pair) opens once."""
    tifffile.imwrite(tmp_path / "warm.tif", np.zeros((32, 32), np.uint8))
    denoise_file(tmp_path / "warm.tif", model, tmp_path / "warm_out.tif")


def test_batch_of_small_files_is_flat_and_closes_its_files(tmp_path):
    """Regression: each TIFF stayed open (tifffile's zarr store) until garbage-collected."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(150):
        tifffile.imwrite(src / f"f{i:03d}.tif",
                         np.random.default_rng(i).integers(0, 255, (32, 32), np.uint8))
    samples: list[float] = []
    model = tiny_model()
    warm_up(tmp_path, model)
    before = fds()
    summary = denoise_batch([str(src)], model, tmp_path / "out",
                            on_result=lambda r: samples.append(rss()))
    growth = samples[-1] - samples[14]
    ok = len(summary.done) == 150 and growth < FLAT_MIB and fds() <= before
    record_case("under load: 150-file batch", "accepted" if ok else "crash")
    assert ok, (summary.line(), growth, before, fds())


def test_many_plane_stack_is_flat_and_closes_its_file(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 255, (100, 64, 64), np.uint8),
                     metadata={"axes": "ZYX"})
    samples: list[float] = []
    model = tiny_model()
    warm_up(tmp_path, model)
    before = fds()
    denoise_file(path, model, tmp_path / "out.tif", tile=64,
                 progress=lambda done, total: samples.append(rss()))
    growth = samples[-1] - samples[9]
    ok = (tifffile.imread(tmp_path / "out.tif").shape == (100, 64, 64) and growth < FLAT_MIB
          and fds() <= before)
    record_case("under load: 100-plane stack", "accepted" if ok else "crash")
    assert ok, (growth, before, fds())
