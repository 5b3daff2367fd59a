"""npe2 reader: large TIFFs and zarr stores open as lazy dask layers (pixels read when viewed).

Small TIFFs are left to napari's own reader (it loads them whole, which is faster for them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

#: TIFF files at least this large open lazily; NAPARI_NOISE2SCORE_LAZY_MB overrides it.
LAZY_THRESHOLD_BYTES = 1 * 2**30


def lazy_threshold() -> int:
    value = os.environ.get("NAPARI_NOISE2SCORE_LAZY_MB")
    return int(float(value) * 2**20) if value else LAZY_THRESHOLD_BYTES


def napari_get_reader(path: str | list[str]) -> Callable | None:
    """Return ``read_lazy`` for a zarr store or a TIFF above the size threshold, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    from .io.files import TIFF_SUFFIXES
    from .io.lazy import is_zarr

    p = Path(path)
    if is_zarr(p) and p.exists():
        return read_lazy
    if p.suffix.lower() in TIFF_SUFFIXES and p.is_file() and p.stat().st_size >= lazy_threshold():
        return read_lazy
    return None


def read_lazy(path: str | list[str]) -> list[tuple]:
    """One image layer whose data is a dask array over the file's chunks."""
    from .io.lazy import open_lazy

    if isinstance(path, list):
        path = path[0]
    data, axes = open_lazy(path)
    name = Path(path).name.split(".")[0]
    return [(data, {"name": name, "metadata": {"axes": axes, "path": str(path)}}, "image")]
