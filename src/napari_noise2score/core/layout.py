"""How an nD array splits into 2D planes, reading one 2D window of it, the one plane
sampler and the one laziness test (numpy only: io reads training samples with it without
loading torch)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputFileError, Noise2ScoreError


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
        index: list[int | slice] = [0] * len(self.shape)
        for axis, i in zip(self.order[:-2], stack_index, strict=True):
            index[axis] = i
        index[self.axes.index("Y")], index[self.axes.index("X")] = ys, xs
        return read_window(source, tuple(index), self.transposed)


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
        raise InputFileError(f"cannot read the input (truncated or corrupt?): "
                             f"{type(exc).__name__}: {exc}") from None
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
