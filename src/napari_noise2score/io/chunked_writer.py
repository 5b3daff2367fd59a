"""Writing results plane by plane (TIFF or zarr) without holding them whole in memory.

Output goes to a temporary name beside the target and is renamed when complete: a stop,
an error or a full disk leaves no partial file behind, and the target (if it existed) is
untouched until the end.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..core.errors import OutputError
from .files import TIFF_SUFFIXES

#: Classic TIFF addresses at most 4 GiB; leave room for tags and page headers.
BIGTIFF_ABOVE = 2**32 - 2**28


def is_zarr_output(path: Path) -> bool:
    return path.suffix.lower() == ".zarr"


def check_output(path: Path, nbytes: int, inputs: Iterable[Path] = ()) -> None:
    """Refuse, before any work, an output that overwrites an input, sits on a read-only place
    or does not fit on its disk (``nbytes``: the result's size)."""
    path = Path(path)
    for src in inputs:
        src = Path(src)
        if path.resolve() == src.resolve() or (
                path.exists() and src.exists() and os.path.samefile(path, src)):
            raise OutputError(f"the output {path} would overwrite its input")
    if path.suffix.lower() not in TIFF_SUFFIXES and not is_zarr_output(path):
        raise OutputError(f"cannot write {path.name}: the output must end in .tif, .tiff "
                          "or .zarr")
    parent = path.parent
    while not parent.exists():  # the folder is created later; check where it would be
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {parent} is read-only")
    free = shutil.disk_usage(parent).free
    if nbytes > free:
        raise OutputError(f"cannot write {path}: the result needs {nbytes / 2**30:.2f} GiB, "
                          f"the disk has {free / 2**30:.2f} GiB free")


def _output_error(path: Path, exc: OSError) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"cannot write {path}: the disk is full; nothing was kept")
    if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return OutputError(f"cannot write {path}: permission denied (read-only?)")
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")


def write_planes(
    path: str | os.PathLike,
    planes: Iterable[np.ndarray],
    stack_shape: tuple[int, ...],
    plane_shape: tuple[int, int],
    axes: str,
) -> Path:
    """Write float32 planes (Y, X), given in stack C order, as one TIFF or zarr array of
    shape ``stack_shape + plane_shape`` with ``axes`` (stack axes, then YX).

    Only one plane is held at a time. TIFF becomes BigTIFF when it would pass 4 GiB.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if is_zarr_output(path):
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:
        raise _output_error(path, exc) from None
    shape = tuple(stack_shape) + tuple(plane_shape)
    try:
        if is_zarr_output(path):
            _write_zarr(tmp, planes, shape, axes)
            if path.is_dir():
                shutil.rmtree(path)
        else:
            _write_tiff(tmp, planes, shape, axes)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise _output_error(path, exc) from None
    except BaseException:
        _remove(tmp)
        raise
    return path


def _remove(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def _write_tiff(tmp: Path, planes: Iterable[np.ndarray], shape: tuple, axes: str) -> None:
    import tifffile

    nbytes = int(np.prod(shape)) * 4
    with tifffile.TiffWriter(tmp, bigtiff=nbytes > BIGTIFF_ABOVE) as tif:
        tif.write(iter(planes), shape=shape, dtype=np.float32, photometric="minisblack",
                  metadata={"axes": axes})


def _write_zarr(tmp: Path, planes: Iterable[np.ndarray], shape: tuple, axes: str) -> None:
    import zarr

    h, w = shape[-2:]
    chunks = (1,) * (len(shape) - 2) + (min(h, 1024), min(w, 1024))
    array = zarr.create_array(str(tmp), shape=shape, chunks=chunks, dtype=np.float32,
                              dimension_names=[a.lower() for a in axes], overwrite=True)
    stack = shape[:-2]
    for i, plane in enumerate(planes):
        array[np.unravel_index(i, stack) if stack else ()] = plane
