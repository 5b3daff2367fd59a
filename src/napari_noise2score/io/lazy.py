"""Opening images lazily as dask arrays: TIFF (BigTIFF, OME-TIFF, ImageJ, multi-page) through
tifffile's zarr interface, zarr arrays and OME-Zarr groups, memory-mapped ``.npy``.

Nothing but metadata is read on opening; pixels are read chunk by chunk when computed.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..core.errors import AxesError, InputFileError, Noise2ScoreError
from ..core.layout import PlaneLayout, crop_side, sample_windows
from ..core.stack import AXIS_LETTERS, check_axes
from .files import TIFF_SUFFIXES, read_image

#: Letters tifffile and OME-NGFF use that mean what ours mean; others are "unnamed" axes.
_NAMED = set("TZCSYX")
#: At most this many bytes of planes are read to train on one large input.
TRAIN_MAX_BYTES = 256 * 2**20
#: A zarr array of more chunks than this is refused (16 Mi chunks of 256 x 256 pixels are
#: a 1 Tpx image): planning them alone would fill the memory.
MAX_CHUNKS = 2**24


def is_zarr(path: Path) -> bool:
    """Whether ``path`` is a zarr store (a folder with zarr metadata, or named *.zarr)."""
    return path.suffix.lower() == ".zarr" or (path.is_dir() and any(
        (path / name).exists() for name in (".zarray", ".zgroup", "zarr.json")))


def resolve_axes(file_axes: str, ndim: int, given: str | None, path: Path) -> str:
    """The axes to use: ``given`` if any, else the file's own names. One axis the file does
    not name (tifffile 'Q' or 'I', no metadata at all) besides Y and X becomes a stack axis
    (T); with two or more the layout is ambiguous and the user must give ``axes``."""
    if given is not None:
        try:
            return check_axes(given, ndim)
        except Noise2ScoreError as exc:
            raise AxesError(f"{path.name}: {exc}") from None
    file_axes = file_axes.upper()
    if len(file_axes) != ndim or "Y" not in file_axes or "X" not in file_axes:
        raise AxesError(f"cannot infer the axes of {path.name} (shape of {ndim} dimensions, "
                        f"file axes {file_axes!r}); give the axes, e.g. axes=TZYX")
    unnamed = [i for i, a in enumerate(file_axes) if a not in _NAMED]
    if len(unnamed) > 1:
        raise AxesError(
            f"cannot infer the axes of {path.name}: its metadata names them {file_axes!r} "
            f"({len(unnamed)} unnamed); give the axes, e.g. axes=TZYX")
    axes = list(file_axes)
    for i in unnamed:
        axes[i] = next(a for a in "TZCQ" if a not in file_axes)
    result = "".join(axes)
    if len(set(result)) != len(result) or set(result) - set(AXIS_LETTERS):
        raise AxesError(f"cannot infer the axes of {path.name} ({file_axes!r}); give the axes "
                        "parameter")
    return result


def _check_tiff_complete(tif, series, path: Path) -> None:
    """Raise InputFileError when the file is shorter than its own pages say (truncated)."""
    size = os.path.getsize(path)
    if series.dataoffset is not None:
        end = series.dataoffset + series.size * series.dtype.itemsize
    else:
        ends = [int(o) + int(c) for page in series.pages if page is not None
                for o, c in zip(page.dataoffsets, page.databytecounts, strict=False)]
        end = max(ends, default=size + 1)
    if end > size:
        raise InputFileError(f"{path} is truncated: its pages need {end} bytes, "
                             f"the file has {size}")


def series_index(tif, series: int | None, path: Path) -> int:
    """The index of the image series to denoise: the only one, or ``series`` (a TIFF holding
    several is refused without a choice, naming them, rather than keeping the first)."""
    found = tif.series
    if not found:
        raise InputFileError(f"cannot read {path}: not a valid TIFF file (no image in it)")
    if series is None and len(found) > 1:
        names = ", ".join(f"{i}: {tuple(s.shape)} {s.axes}" for i, s in enumerate(found))
        raise InputFileError(f"{path.name} holds {len(found)} image series ({names}); choose "
                             f"one with series=N")
    index = 0 if series is None else series
    if not 0 <= index < len(found):
        raise InputFileError(f"{path.name} has no series {index}: it holds {len(found)} "
                             f"(0 to {len(found) - 1})")
    return index


def _open_tiff(path: Path, axes: str | None, series: int | None = None):
    import dask.array as da
    import tifffile
    import zarr

    try:
        with tifffile.TiffFile(path) as tif:
            index = series_index(tif, series, path)
            file_axes = tif.series[index].axes
            _check_tiff_complete(tif, tif.series[index], path)
        store = tifffile.imread(path, aszarr=True, series=index, level=0)
        array = zarr.open_array(store, mode="r") if not isinstance(store, np.ndarray) else store
    except Noise2ScoreError:
        raise
    except Exception as exc:
        raise InputFileError(f"cannot read {path}: not a valid TIFF file "
                             f"({type(exc).__name__}: {exc})") from None
    return da.from_zarr(array), resolve_axes(file_axes, array.ndim, axes, path)


def _open_zarr(path: Path, axes: str | None):
    import dask.array as da
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise InputFileError(f"cannot open {path} as zarr ({type(exc).__name__}: {exc})") from None
    names: list[str] | None = None
    if isinstance(node, zarr.Group):  # OME-Zarr: the first (full-resolution) dataset
        multiscales = node.attrs.get("multiscales") or node.attrs.get("ome", {}).get(
            "multiscales")
        if multiscales:
            names = [str(a.get("name", "?")) for a in multiscales[0].get("axes", [])]
            node = node[multiscales[0]["datasets"][0]["path"]]
        else:
            arrays = list(node.array_keys())
            if len(arrays) != 1:
                raise InputFileError(f"{path} is a zarr group with {len(arrays)} arrays; "
                                     "point to the one to denoise")
            node = node[arrays[0]]
    chunks = tuple(node.chunks)
    n_chunks = math.prod(-(-s // max(c, 1)) for s, c in zip(node.shape, chunks, strict=True))
    if n_chunks > MAX_CHUNKS:  # dask would fill the memory planning them
        raise InputFileError(f"cannot read {path}: its {tuple(node.shape)} array in chunks of "
                             f"{chunks} is {n_chunks} chunks, more than {MAX_CHUNKS} (a "
                             "damaged header?)")
    if names is None:
        names = getattr(node.metadata, "dimension_names", None) or node.attrs.get(
            "_ARRAY_DIMENSIONS")
    file_axes = "".join(str(n)[:1] if n else "?" for n in names) if names else (
        "Q" * (node.ndim - 2) + "YX")
    return da.from_zarr(node), resolve_axes(file_axes, node.ndim, axes, path)


@contextmanager
def quiet_tifffile() -> Iterator[None]:
    """tifffile's logged warnings and errors (about the tags of a damaged file) off for
    the block: they are not ours to print."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def open_lazy(path: str | os.PathLike, axes: str | None = None, series: int | None = None):
    """Open an image without reading its pixels: ``(dask array, axes)``. TIFF and zarr are
    read chunk by chunk, ``.npy`` is memory-mapped; other formats (PNG, JPEG) are small and
    read whole. ``series`` chooses the image series of a TIFF that holds several (needed
    then); other files hold one, series 0. Errors are InputFileError or AxesError."""
    import dask.array as da

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"input not found: {path}")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES and not is_zarr(path):
        with quiet_tifffile():  # our own error says what is wrong, in one line
            return _open_tiff(path, axes, series)
    if series not in (None, 0):
        raise InputFileError(f"{path.name} holds one image (series 0), not series {series}")
    if is_zarr(path):
        return _open_zarr(path, axes)
    if suffix == ".npy":
        try:
            data = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise InputFileError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
        file_axes = "Q" * (data.ndim - 2) + "YX"
    else:
        try:
            data = read_image(path)
        except InputFileError:
            raise
        except Noise2ScoreError as exc:
            raise InputFileError(str(exc)) from None
        file_axes = "Q" * (data.ndim - 2) + "YX" if data.ndim != 3 or data.shape[-1] > 4 \
            else "YXS"
    axes = resolve_axes(file_axes, data.ndim, axes, path)
    chunks = tuple(1 if a not in "YX" else -1 for a in axes)
    return da.from_array(data, chunks=chunks), axes


def close_lazy(data) -> None:
    """Close the file a lazily opened TIFF holds: tifffile's store keeps it open until it
    is garbage-collected, so a batch of many files would pile up open files."""
    graph = getattr(data, "__dask_graph__", lambda: None)()
    for value in dict(graph or {}).values():
        store = getattr(value, "store", None)
        if type(store).__module__.startswith("tifffile") and hasattr(store, "close"):
            store.close()


def training_planes(data, axes: str, max_bytes: int = TRAIN_MAX_BYTES) -> np.ndarray:
    """A bounded sample to train on: evenly spaced planes (Y, X) as a (N, Y, X) array of at
    most ``max_bytes`` of float32 (the centre crop of each chosen plane when one alone is
    larger). Reading a huge file whole to train is never needed: a few planes hold millions
    of patches."""
    layout = PlaneLayout(tuple(data.shape), axes)
    pixels = max(max_bytes // 4, 1)
    ch, cw = crop_side(*layout.plane_shape, pixels)
    stack = list(layout.plane_indices())
    windows = sample_windows([layout.plane_shape] * len(stack), max_bytes // (4 * ch * cw), pixels)
    return np.stack([layout.read(data, stack[i], ys, xs) for i, ys, xs in windows])
