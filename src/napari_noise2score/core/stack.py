"""Turning the user's arrays (2D, stacks, time series, z-stacks) into 2D planes, and back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputFileError, Noise2ScoreError

AXIS_LETTERS = "TZCSQYX"
#: Data types of a denoised result: float32, or the input's own ("same").
DTYPES = ("float32", "same")


def infer_axes(ndim: int) -> str:
    """Default axes for an array of ``ndim`` dimensions: the last two are Y and X."""
    if ndim < 2:
        raise Noise2ScoreError(
            f"expected an image with at least 2 dimensions (Y, X), got {ndim}"
        )
    if ndim > 5:
        raise Noise2ScoreError(f"arrays of {ndim} dimensions are not supported (at most 5)")
    return {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX"}[ndim]


def check_axes(axes: str | None, ndim: int) -> str:
    """Validate ``axes`` (e.g. 'TYX', 'ZYX', 'YXC') against an array's dimensions."""
    if axes is None:
        return infer_axes(ndim)
    axes = axes.upper()
    if len(axes) != ndim:
        raise Noise2ScoreError(
            f"axes {axes!r} name {len(axes)} dimensions but the image has {ndim}"
        )
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


def check_image(data: np.ndarray, name: str = "image") -> None:
    """Reject data no denoiser can use: empty, non-numeric, complex, NaN/inf or constant."""
    if data.size == 0:
        raise Noise2ScoreError(f"{name} is empty (shape {data.shape})")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)
            or data.dtype == bool):
        raise Noise2ScoreError(f"{name} has unsupported data type {data.dtype}")
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise Noise2ScoreError(f"{name} contains NaN or infinite values; fix or mask them first")


def intensity_scale(
    arrays: Sequence[np.ndarray], offset: float = 0.0, max_samples: int = 2_000_000
) -> float:
    """The intensity above ``offset`` that maps to 1.0 for the network.

    8-bit data: 255 - offset (so the usual 0-255 conventions hold); else a robust maximum.
    """
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


def is_lazy(data) -> bool:
    """Whether ``data`` is a lazy array (dask: computed when asked), not one in memory."""
    return type(data).__module__.startswith("dask.") and hasattr(data, "compute")


@dataclass(frozen=True)
class PlaneLayout:
    """How an nD array splits into 2D planes: the stack axes first, then Y and X."""

    shape: tuple[int, ...]
    axes: str

    @property
    def order(self) -> list[int]:
        a = self.axes
        return [i for i, c in enumerate(a) if c not in "YX"] + [a.index("Y"), a.index("X")]

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[i] for i in self.order[:-2])

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.shape[self.axes.index("Y")], self.shape[self.axes.index("X")]

    @property
    def planes_axes(self) -> str:
        """Axes of the output written plane by plane (stack axes, then YX)."""
        return "".join(self.axes[i] for i in self.order)

    def plane_indices(self) -> Iterator[tuple[int, ...]]:
        """Stack indices of every plane, in C order."""
        yield from np.ndindex(*self.stack_shape) if self.stack_shape else iter([()])

    @property
    def transposed(self) -> bool:
        """Whether X comes before Y in the source (its windows are read transposed)."""
        return self.axes.index("Y") > self.axes.index("X")

    def read(self, source, stack_index: tuple[int, ...], ys: slice, xs: slice) -> np.ndarray:
        """One plane's (ys, xs) window of ``source``, (Y, X) (``read_window``)."""
        return read_window(source, self.source_index(stack_index, ys, xs), self.transposed)

    def source_index(self, stack_index: tuple[int, ...], ys: slice, xs: slice) -> tuple:
        """The index into the source array for one plane's (ys, xs) window."""
        index: list[int | slice] = [0] * len(self.shape)
        for axis, i in zip(self.order[:-2], stack_index, strict=True):
            index[axis] = i
        index[self.axes.index("Y")], index[self.axes.index("X")] = ys, xs
        return tuple(index)


def read_window(source, index: tuple, transpose: bool) -> np.ndarray:
    """Read one 2D window (Y, X) from an array-like; read failures become InputFileError."""
    try:
        block = source[index]
        if is_lazy(block):
            block = block.compute(scheduler="synchronous")
        block = np.asarray(block)
    except Noise2ScoreError:
        raise
    except Exception as exc:
        raise InputFileError(
            f"cannot read the input (truncated or corrupt?): {type(exc).__name__}: {exc}"
        ) from None
    return block.T if transpose else block


def crop_side(h: int, w: int, pixels: int) -> tuple[int, int]:
    """The (height, width) of the centre crop of an h x w plane to at most ``pixels``."""
    ch = min(h, int(np.sqrt(pixels))) if h * w > pixels else h
    return ch, min(w, pixels // ch)


def sample_windows(shapes: Sequence[tuple[int, int]], keep: int, pixels: int | None = None,
                   spread: bool = True) -> list[tuple[int, slice, slice]]:
    """The one plane sampler: (plane index, ys, xs) for ``keep`` of the planes of ``shapes``,
    evenly spaced from first to last (``spread``; else every n-th from the first), each
    window the centre crop to at most ``pixels`` pixels when given (all of it when not)."""
    n = len(shapes)
    keep = max(1, min(n, keep))
    picks = (np.unique(np.linspace(0, n - 1, keep).round().astype(int)) if spread
             else range(0, n, max(1, n // keep))[:keep])
    out = []
    for i in picks:
        h, w = shapes[i]
        ch, cw = crop_side(h, w, pixels) if pixels is not None else (h, w)
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        out.append((int(i), slice(y0, y0 + ch), slice(x0, x0 + cw)))
    return out
