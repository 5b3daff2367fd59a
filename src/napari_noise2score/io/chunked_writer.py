"""Writing results plane by plane (TIFF or zarr) without holding them whole in memory.

Output goes to a temporary name beside the target and is renamed when complete: a stop,
an error or a full disk leaves no partial file behind, and the target (if it existed) is
untouched until the end. A killed process cannot remove its temporary file; the name says
which host and process wrote it (``.NAME.HOST.PID.RANDOM.tmp``) so that a later run can
tell a dead writer's leftover from a live one's work (``remove_stale_temporaries``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..core.errors import OutputError
from ..core.stack import cast_result
from .calibration import Calibration, tiff_options
from .files import TIFF_SUFFIXES
from .outputs import check_location, output_error, set_default_mode

#: Classic TIFF addresses at most 4 GiB; leave room for tags and page headers.
BIGTIFF_ABOVE = 2**32 - 2**28
#: A temporary output untouched this long is a leftover whatever wrote it (another host's,
#: or one whose writer cannot be told): a live writer touches it at every plane.
STALE_AFTER_SECONDS = 24 * 3600


def is_zarr_output(path: Path) -> bool:
    return path.suffix.lower() == ".zarr"


def check_output(path: Path, nbytes: int, inputs: Iterable[Path] = ()) -> None:
    """Refuse, before any work, an image output that is not .tif/.tiff/.zarr or that
    ``outputs.check_location`` refuses (an input, a folder, read-only, no room for
    ``nbytes``: the result's size)."""
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES and not is_zarr_output(path):
        raise OutputError(f"cannot write {path.name}: the output must end in .tif, .tiff "
                          "or .zarr")
    check_location(path, nbytes, inputs, "zarr" if is_zarr_output(path) else "file")


@contextmanager
def atomic_output(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """A temporary file (or folder) beside ``path``, ``.NAME.HOST.PID.RANDOM.tmp`` with the
    umask's permissions, renamed to ``path`` when the block ends and removed if it raises
    (an OSError then becomes one clear OutputError). Leftovers of killed writers of the
    same output are removed first (``remove_stale_temporaries``)."""
    path = Path(path)
    prefix = f".{path.name}.{_host()}.{os.getpid()}."
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=path.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmp = Path(name)
        set_default_mode(tmp, directory)
    except OSError as exc:
        raise output_error(path, exc) from None
    try:
        yield tmp
        if directory and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise output_error(path, exc) from None
    except BaseException:
        _remove(tmp)
        raise


def write_planes(
    path: str | os.PathLike,
    planes: Iterable[np.ndarray],
    stack_shape: tuple[int, ...],
    plane_shape: tuple[int, int],
    axes: str,
    dtype: np.dtype | type = np.float32,
    calibration: Calibration | None = None,
) -> Path:
    """Write float32 planes (Y, X), given in stack C order, as one TIFF or zarr array of
    shape ``stack_shape + plane_shape`` with ``axes`` (stack axes, then YX), atomically
    (``atomic_output``).

    Planes are converted to ``dtype`` (integers rounded and clipped to the type's range); a
    TIFF keeps the input's ``calibration`` (``io.calibration``). Only one plane is held at a
    time. TIFF becomes BigTIFF when it would pass 4 GiB. A result with no finite value at
    all (a broken model) is refused and nothing is kept.
    """
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


def _host() -> str:
    """This machine's name as it appears in temporary names: letters, digits and dashes."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:32] or "host"


def _fields(tmp: Path, output_name: str) -> list[str]:
    """What a temporary name adds to ``.NAME.`` before ``.tmp``, split at the dots."""
    return tmp.name[len(output_name) + 2 : -len(".tmp")].split(".")


def temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary outputs of the output ``path`` by any writer: ``.NAME.HOST.PID.RANDOM.tmp``
    or, from older versions, ``.NAME.RANDOM.tmp``."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    head = f".{path.name}."
    found = [p for p in path.parent.iterdir()
             if p.name.startswith(head) and p.name.endswith(".tmp")]
    return sorted(p for p in found if len(_fields(p, path.name)) in (1, 3))


def _writer(tmp: Path, output_name: str) -> tuple[str, int] | None:
    """(host, pid) of the process that writes ``tmp``, or None when its name does not say."""
    fields = _fields(tmp, output_name)
    if len(fields) != 3 or not fields[1].isdigit():
        return None
    return fields[0], int(fields[1])


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _mtimes(tmp: Path) -> Iterator[float]:
    """Modification times of a temporary file, or of a temporary zarr folder and its files."""
    yield tmp.stat().st_mtime
    if tmp.is_dir():
        for root, _dirs, files in os.walk(tmp):
            yield os.stat(root).st_mtime
            for name in files:
                yield os.stat(os.path.join(root, name)).st_mtime


def is_stale(tmp: Path, output_name: str, max_age: float = STALE_AFTER_SECONDS) -> bool:
    """Whether a temporary output is a leftover of a killed run: its writer, named in it, ran
    on this host and is gone; or (another host's, or an unnamed writer) nothing in it
    changed for ``max_age`` seconds."""
    writer = _writer(tmp, output_name)
    try:
        if writer is not None and writer[0] == _host():
            return not _process_alive(writer[1])
        newest = time.time() - max_age
        return not any(t > newest for t in _mtimes(tmp))
    except FileNotFoundError:  # its writer just finished or removed it
        return False


def remove_stale_temporaries(path: str | os.PathLike,
                             max_age: float = STALE_AFTER_SECONDS) -> list[Path]:
    """Remove the leftover temporary outputs of ``path`` (see ``is_stale``); those of live
    writers (another run sharing the folder) stay. Returns what was removed."""
    name = Path(path).name
    removed = []
    for tmp in temporaries(path):
        if is_stale(tmp, name, max_age):
            try:
                _remove(tmp)
            except OSError:  # not ours to remove (permissions): leave it
                continue
            removed.append(tmp)
    return removed


def _remove(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


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
