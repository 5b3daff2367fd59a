"""Writing results plane by plane (TIFF or zarr) without holding them whole in memory,
under a temporary name renamed when complete (``io.atomic``): a stop, an error or a full
disk leaves no partial file, and an existing target is untouched until the end. The names
say which host and process wrote them, so a later run tells a killed writer's leftover from
a live one's work (``remove_stale_temporaries``, also importable from here).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..core.errors import OutputError
from ..core.stack import cast_result
from .atomic import _host as _host
from .atomic import atomic_output
from .atomic import remove_stale_temporaries as remove_stale_temporaries
from .atomic import temporaries as temporaries
from .calibration import Calibration, tiff_options
from .files import TIFF_SUFFIXES
from .outputs import check_location

#: Classic TIFF addresses at most 4 GiB; leave room for tags and page headers.
BIGTIFF_ABOVE = 2**32 - 2**28


def is_zarr_output(path: Path) -> bool:
    return path.suffix.lower() == ".zarr"


def check_output(path: Path, nbytes: int, inputs: Iterable[Path] = ()) -> None:
    """Refuse, before any work, an image output that is not .tif/.tiff/.zarr or that
    ``outputs.check_location`` refuses (no room for ``nbytes``, the result's size...)."""
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES and not is_zarr_output(path):
        raise OutputError(f"cannot write {path.name}: the output must end in .tif, .tiff "
                          "or .zarr")
    check_location(path, nbytes, inputs, "zarr" if is_zarr_output(path) else "file")


def write_planes(path: str | os.PathLike, planes: Iterable[np.ndarray],
                 stack_shape: tuple[int, ...], plane_shape: tuple[int, int], axes: str,
                 dtype: np.dtype | type = np.float32,
                 calibration: Calibration | None = None) -> Path:
    """Write float32 planes (Y, X), given in stack C order, as one TIFF or zarr array of
    shape ``stack_shape + plane_shape`` with ``axes``, atomically, one plane at a time, as
    ``dtype`` (integers rounded and clipped); a TIFF keeps ``calibration`` and becomes
    BigTIFF past 4 GiB. A result with no finite value (a broken model) is refused."""
    path = Path(path)
    dtype = np.dtype(dtype)
    finite = [False]
    planes = _checked(planes, dtype, finite)
    shape = tuple(stack_shape) + tuple(plane_shape)
    zarr = is_zarr_output(path)
    with atomic_output(path, directory=zarr) as tmp:
        if zarr:
            _write_zarr(tmp, planes, shape, axes, dtype)
        else:
            _write_tiff(tmp, planes, shape, axes, dtype, calibration, path.name)
        if not finite[0]:
            raise OutputError(f"not writing {path}: every value of the result is NaN or "
                              "infinite (a broken model?)")
    return path


def _checked(planes: Iterable[np.ndarray], dtype: np.dtype,
             finite: list[bool]) -> Iterator[np.ndarray]:
    """The planes as ``dtype``; ``finite[0]`` becomes True once any value is finite."""
    for plane in planes:
        if not finite[0]:
            finite[0] = bool(np.isfinite(plane).any())
        yield cast_result(plane, dtype)


def _write_tiff(tmp: Path, planes: Iterable[np.ndarray], shape: tuple, axes: str,
                dtype: np.dtype, calibration: Calibration | None, name: str) -> None:
    import tifffile

    nbytes = int(np.prod(shape)) * dtype.itemsize
    options, write = tiff_options(calibration, axes, name, nbytes > BIGTIFF_ABOVE)
    with tifffile.TiffWriter(tmp, **options) as tif:
        tif.write(iter(planes), shape=shape, dtype=dtype, photometric="minisblack", **write)


def _write_zarr(tmp: Path, planes: Iterable[np.ndarray], shape: tuple, axes: str,
                dtype: np.dtype) -> None:
    import zarr

    h, w = shape[-2:]
    chunks = (1,) * (len(shape) - 2) + (min(h, 1024), min(w, 1024))
    array = zarr.create_array(str(tmp), shape=shape, chunks=chunks, dtype=dtype,
                              dimension_names=[a.lower() for a in axes], overwrite=True)
    stack = shape[:-2]
    for i, plane in enumerate(planes):
        array[np.unravel_index(i, stack) if stack else ()] = plane
