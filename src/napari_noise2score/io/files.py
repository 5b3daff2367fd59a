"""Reading images (TIFF, PNG/JPEG, NumPy) and writing TIFF results atomically."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..core.errors import Noise2ScoreError, OutputError
from .atomic import atomic_output
from .outputs import refuse_inputs

TIFF_SUFFIXES = (".tif", ".tiff")
PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
READABLE = TIFF_SUFFIXES + PLAIN_SUFFIXES + (".npy",)
#: Output names that look like a file of a format not written: never made into folders.
NOT_FOLDERS = PLAIN_SUFFIXES + (".npy", ".n2s", ".gif", ".webp", ".jp2", ".czi", ".nd2")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file into memory; unreadable files raise Noise2ScoreError."""
    path = Path(path)
    if not path.is_file():
        raise Noise2ScoreError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in READABLE:
        raise Noise2ScoreError(f"cannot read {path.name}: supported formats are "
                               f"{', '.join(READABLE)}")
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            data = tifffile.imread(path)
        elif suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            data = _read_plain(path)
    except Noise2ScoreError:
        raise
    except Exception as exc:
        raise Noise2ScoreError(f"cannot read {path}: not a valid {suffix[1:].upper()} file "
                               f"({type(exc).__name__}: {exc})") from None
    data = np.asarray(data)
    if data.size == 0:
        raise Noise2ScoreError(f"cannot read {path}: the file holds no image data")
    return data


def _read_plain(path: Path) -> np.ndarray:
    """A PNG/JPEG/BMP as it is stored: greyscale (Y, X), or RGB (Y, X, 3) with each channel
    denoised as a plane (a palette image as its RGB colours). Transparency (RGBA, LA) and
    other colour spaces are refused: there is no faithful way to denoise them, as are 16-bit
    colour PNGs (Pillow reads them as 8 bits)."""
    from PIL import Image

    with Image.open(path) as img:
        if img.mode in ("RGB", "RGBA") and any(str(t.args).endswith(";16B") for t in img.tile):
            raise Noise2ScoreError(f"cannot read {path.name} exactly: it is a 16-bit colour "
                                   "PNG, which would be read as 8 bits; save it as TIFF first")
        if img.mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
            raise Noise2ScoreError(f"cannot denoise {path.name}: it has an alpha (transparency) "
                                   f"channel ({img.mode}); save it without transparency (RGB "
                                   "or greyscale) first")
        if img.mode not in ("L", "I", "F", "1", "RGB") and not img.mode.startswith("I;16"):
            raise Noise2ScoreError(f"cannot denoise {path.name}: its colour mode {img.mode} is "
                                   "not supported; save it as greyscale or RGB first")
        return np.asarray(img)


def write_tiff(path: str | os.PathLike, data: np.ndarray) -> Path:
    """Write ``data`` as TIFF (BigTIFF above 2 GiB) via a temporary file renamed when
    complete (``io.atomic.atomic_output``)."""
    import tifffile

    path = Path(path)
    with atomic_output(path) as tmp:
        tifffile.imwrite(tmp, data, bigtiff=data.nbytes > 2**31 - 2**25)
    return path


def output_paths(inputs: list[Path], out: Path, protect: Iterable[Path] = ()) -> list[Path]:
    """Output paths: ``out`` itself for one input when it names a .tif/.tiff/.zarr, else
    out/NAME.tif. An output that would overwrite its input or one of ``protect`` (e.g. the
    model file) raises OutputError, and so does a file name of another image format."""
    suffix = out.suffix.lower()
    if len(inputs) == 1 and suffix in TIFF_SUFFIXES + (".zarr",) and not (
            out.is_dir() and suffix != ".zarr"):
        targets = [out]
    elif suffix in NOT_FOLDERS and not out.is_dir():
        raise OutputError(f"cannot write {out.name}: results are written as .tif, .tiff or "
                          ".zarr (or into a folder)")
    elif out.exists() and not out.is_dir():
        raise Noise2ScoreError(f"{out} is a file; give a folder for several inputs")
    else:
        names = [p.stem + ".tif" for p in inputs]
        if len(set(names)) != len(names):
            raise Noise2ScoreError("two inputs share a file name; the outputs would collide")
        targets = [out / n for n in names]
    protect = list(protect)
    for src, dst in zip(inputs, targets, strict=True):
        refuse_inputs(dst, [src, *protect])
    return targets
