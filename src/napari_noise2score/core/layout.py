"""How an nD array splits into 2D planes, and reading one 2D window of it (numpy only:
io reads training samples with it without loading torch)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .errors import InputFileError, Noise2ScoreError


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
        if hasattr(block, "compute"):
            block = block.compute(scheduler="synchronous")
        block = np.asarray(block)
    except Noise2ScoreError:
        raise
    except Exception as exc:
        raise InputFileError(
            f"cannot read the input (truncated or corrupt?): {type(exc).__name__}: {exc}"
        ) from None
    return block.T if transpose else block
