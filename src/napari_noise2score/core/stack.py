"""Turning the user's arrays (2D, stacks, time series, z-stacks) into 2D planes, and back."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import Noise2ScoreError
from .layout import PlaneLayout

AXIS_LETTERS = "TZCSQYX"
#: Data types of a denoised result: float32, or the input's own ("same").
DTYPES = ("float32", "same")


def infer_axes(ndim: int) -> str:
    """Default axes for an array of ``ndim`` dimensions: the last two are Y and X."""
    if ndim < 2:
        raise Noise2ScoreError(f"expected an image with at least 2 dimensions (Y, X), got {ndim}")
    if ndim > 5:
        raise Noise2ScoreError(f"arrays of {ndim} dimensions are not supported (at most 5)")
    return {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX"}[ndim]


def check_axes(axes: str | None, ndim: int) -> str:
    """Validate ``axes`` (e.g. 'TYX', 'ZYX', 'YXC') against an array's dimensions."""
    if axes is None:
        return infer_axes(ndim)
    axes = axes.upper()
    if len(axes) != ndim:
        raise Noise2ScoreError(f"axes {axes!r} name {len(axes)} dimensions but the image has "
                               f"{ndim}")
    bad = sorted(set(axes) - set(AXIS_LETTERS))
    if bad:
        raise Noise2ScoreError(f"unknown axis letters {bad} in {axes!r}; use {AXIS_LETTERS}")
    if len(set(axes)) != len(axes):
        raise Noise2ScoreError(f"repeated axis letter in {axes!r}")
    if "Y" not in axes or "X" not in axes:
        raise Noise2ScoreError(f"axes {axes!r} must contain Y and X")
    return axes


def to_planes(data: np.ndarray, axes: str | None = None) -> tuple[np.ndarray, str]:
    """View ``data`` as (N, Y, X) planes; also return the checked axes string."""
    data = np.asarray(data)
    axes = check_axes(axes, data.ndim)
    moved = np.transpose(data, PlaneLayout(data.shape, axes).order)
    return moved.reshape((-1,) + moved.shape[-2:]), axes


def from_planes(planes: np.ndarray, shape: Sequence[int], axes: str) -> np.ndarray:
    """Inverse of ``to_planes``: planes back to the original layout."""
    order = PlaneLayout(tuple(shape), axes).order
    return np.transpose(planes.reshape([shape[i] for i in order]), np.argsort(order))


def image_planes(data: np.ndarray, axes: str | None = None, name: str = "image") -> np.ndarray:
    """``data`` checked (``check_image``) and viewed as (N, Y, X) planes (``to_planes``)."""
    data = np.asarray(data)
    check_image(data, name)
    return to_planes(data, axes)[0]


def check_image(data: np.ndarray, name: str = "image") -> None:
    """Reject data no denoiser can use: empty, non-numeric, complex, NaN/inf or constant."""
    if data.size == 0:
        raise Noise2ScoreError(f"{name} is empty (shape {data.shape})")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)
            or data.dtype == bool):
        raise Noise2ScoreError(f"{name} has unsupported data type {data.dtype}")
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise Noise2ScoreError(f"{name} contains NaN or infinite values; fix or mask them first")


def intensity_scale(arrays: Sequence[np.ndarray], offset: float = 0.0,
                    max_samples: int = 2_000_000) -> float:
    """The intensity above ``offset`` that maps to 1.0 for the network: for 8-bit data
    255 - offset (so the usual 0-255 conventions hold), else a robust maximum."""
    if all(a.dtype == np.uint8 for a in arrays) and offset < 128:
        return 255.0 - offset
    rng = np.random.default_rng(0)
    samples = []
    per = max(1, max_samples // max(1, len(arrays)))
    for a in arrays:
        flat = a.reshape(-1)
        pick = flat if flat.size <= per else flat[rng.integers(0, flat.size, per)]
        samples.append(np.abs(pick.astype(np.float64) - offset))
    scale = float(np.percentile(np.concatenate(samples), 99.9))
    if not scale > 0:
        scale = float(max(np.abs(a.astype(np.float64) - offset).max() for a in arrays))
    if not scale > 0:
        raise Noise2ScoreError("the image is all zeros: there is nothing to learn from")
    return scale


def result_dtype(choice: str, input_dtype: np.dtype) -> np.dtype:
    """The data type of a denoised result: float32, or the input's (``choice="same"``)."""
    if choice not in DTYPES:
        raise Noise2ScoreError(f"dtype must be one of {', '.join(DTYPES)}, not {choice!r}")
    return np.dtype(np.float32) if choice == "float32" else np.dtype(input_dtype)


def cast_result(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``x`` as ``dtype``: rounded and clipped to the range of an integer type."""
    dtype = np.dtype(dtype)
    if dtype == x.dtype:
        return x
    if dtype.kind == "b":
        return x >= 0.5
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        wide = x.astype(np.float64) if dtype.itemsize >= 4 else x  # exact bounds
        return np.clip(np.rint(wide), info.min, info.max).astype(dtype)
    return x.astype(dtype)
