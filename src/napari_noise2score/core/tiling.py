"""Denoising arrays larger than memory: planes read tile by tile, each tile with a halo.

The source is any array-like that slices like NumPy (a dask array, a zarr array, a
memory-mapped ``.npy``); only one tile plus its halo is read and held at a time. Each tile
starts on the network's pooling grid and its halo covers the receptive field
(``default_overlap``), so the result equals whole-plane inference to float tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import dask.array as da
import numpy as np
import psutil
import torch

from .errors import Cancelled, Noise2ScoreError
from .inference import (
    ProgressFn,
    StopFn,
    default_overlap,
    denoise_plane,
    resolve_tta,
    scaled_noise,
)
from .layout import PlaneLayout, read_window
from .model import Noise2ScoreModel
from .network import ScoreUNet
from .noise import NoiseParams
from .stack import check_axes, check_image

#: Bytes of activations per input pixel of the default CPU network (width 24, depth 3,
#: unshuffle 2): peak resident memory growth of one forward pass, measured 175 at 1024 x 1024
#: and 159 at 2048 x 2048 (docs/algorithm.md).
MEASURED_BYTES_PER_PIXEL = 175
#: At most this much memory goes to one tile's forward pass when the tile size is automatic.
TILE_MEMORY_CAP = 384 * 2**20
MAX_TILE = 4096


def _bytes_per_pixel(net: ScoreUNet) -> float:
    """Memory per input pixel: activations scaled from the measured default-network figure
    by channels x resolution, plus the float32 planes of the Tweedie step."""
    widths = [net.head[0].out_channels * min(2**i, 4) for i in range(net.depth + 1)]
    load = sum(w / 4**i for i, w in enumerate(widths)) / net.unshuffle**2
    reference = (24 + 48 / 4 + 96 / 16 + 96 / 64) / 4  # the default CPU network
    return MEASURED_BYTES_PER_PIXEL * load / reference + 32


def choose_tile(net: ScoreUNet, overlap: int, memory: int | None = None) -> int:
    """The largest tile (a multiple of the network's) whose forward pass, halo included, fits
    in ``memory`` bytes (default: a quarter of the available memory, at most 384 MiB; on a
    CUDA device, a quarter of its free memory)."""
    if memory is None:
        device = next(net.parameters()).device
        if device.type == "cuda":
            memory = torch.cuda.mem_get_info(device)[0] // 4
        else:
            memory = min(psutil.virtual_memory().available // 4, TILE_MEMORY_CAP)
    m = net.multiple
    side = int(math.sqrt(max(memory, 0) / _bytes_per_pixel(net))) - 2 * overlap
    return int(min(max(side // m * m, 4 * m), MAX_TILE))


#: More tiles than this in one plane are refused before the grid is made (it would fill the
#: memory): 4 Mi tiles of the default 1024 pixels are a plane of 4 Tpx.
MAX_TILES_PER_PLANE = 2**22


def tile_grid(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Core windows (y0, y1, x0, x1) covering a plane; starts are multiples of ``tile``."""
    return [(y0, min(y0 + tile, height), x0, min(x0 + tile, width))
            for y0 in range(0, height, tile) for x0 in range(0, width, tile)]


class TiledDenoiser:
    """Denoise an array-like of any layout plane by plane, one haloed tile at a time."""

    def __init__(
        self,
        model: Noise2ScoreModel,
        shape: tuple[int, ...],
        axes: str | None = None,
        noise: NoiseParams | None = None,
        tile: int | None = None,
        overlap: int | None = None,
        memory: int | None = None,
    ) -> None:
        net = model.net
        m = net.multiple
        #: whether tiles are averaged over the 8 flips and turns (auto: by the input's size)
        self.tta = resolve_tta(model.config.tta, math.prod(shape))
        self.model = model.with_options(tta=self.tta)
        self.layout = PlaneLayout(tuple(shape), check_axes(axes, len(shape)))
        self.scaled = scaled_noise(model, noise)
        overlap = default_overlap(net) if overlap is None else overlap
        if overlap < 0 or (tile is not None and tile < 1):
            raise Noise2ScoreError("tile must be >= 1 and overlap >= 0")
        if memory is not None and not memory > 0:
            raise Noise2ScoreError(f"the memory for a tile must be > 0, got {memory} bytes")
        self.overlap = -(-overlap // m) * m
        h, w = self.layout.plane_shape
        if tile is None:  # from memory, then evened out so no tile is a thin remainder
            longest = max(h, w)
            tile = -(-longest // -(-longest // choose_tile(net, self.overlap, memory)))
        self.tile = -(-tile // m) * m
        n_tiles = -(-h // self.tile) * -(-w // self.tile)
        if n_tiles > MAX_TILES_PER_PLANE:  # a damaged header, most likely: fail, fast
            raise Noise2ScoreError(
                f"a plane of {h} x {w} pixels would be {n_tiles} tiles of {self.tile}; give "
                "a larger tile (or check the file: its header may be damaged)")
        self.grid = tile_grid(h, w, self.tile)
        self._transpose = self.layout.axes.index("Y") > self.layout.axes.index("X")
        model.net.eval()

    @property
    def n_tiles(self) -> int:
        """Tiles in the whole array (the unit of progress and of stopping)."""
        return len(self.grid) * math.prod(self.layout.stack_shape)

    def denoise_tile(self, source, stack_index: tuple[int, ...], window) -> np.ndarray:
        """The denoised core window (y0, y1, x0, x1) of one plane, float32, input units."""
        y0, y1, x0, x1 = window
        h, w = self.layout.plane_shape
        ov = self.overlap
        ya, xa, yb, xb = max(y0 - ov, 0), max(x0 - ov, 0), min(y1 + ov, h), min(x1 + ov, w)
        index = self.layout.source_index(stack_index, slice(ya, yb), slice(xa, xb))
        region = read_window(source, index, self._transpose)
        check_image(region, name="input")
        big = max(region.shape)  # one forward pass over the whole region
        out = denoise_plane(self.model, region, self.scaled, tile=big, overlap=0)
        return out[y0 - ya : y1 - ya, x0 - xa : x1 - xa]

    def iter_planes(
        self,
        source,
        progress: ProgressFn | None = None,
        stop: StopFn | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield each denoised plane (Y, X) in stack C order; ``stop`` is polled before each
        tile (raising ``Cancelled``) and ``progress(tiles_done, tiles_total)`` after each."""
        h, w = self.layout.plane_shape
        done, total = 0, self.n_tiles
        for stack_index in self.layout.plane_indices():
            plane = np.empty((h, w), dtype=np.float32)
            for window in self.grid:
                if stop is not None and stop():
                    raise Cancelled("denoising stopped")
                y0, y1, x0, x1 = window
                plane[y0:y1, x0:x1] = self.denoise_tile(source, stack_index, window)
                done += 1
                if progress is not None:
                    progress(done, total)
            yield plane

    def as_dask(self, source):
        """A lazy dask array in the source's layout: each chunk (one tile of one plane) is
        denoised only when computed, e.g. when napari shows it."""
        layout = self.layout
        chunks = []
        for axis, size in enumerate(layout.shape):
            letter = layout.axes[axis]
            if letter in "YX":
                chunks.append(tuple(min(self.tile, size - s) for s in range(0, size, self.tile)))
            else:
                chunks.append((1,) * size)
        y_axis, x_axis = layout.axes.index("Y"), layout.axes.index("X")
        stack_axes = layout.order[:-2]

        def block(block_info=None) -> np.ndarray:
            (loc,) = [v["array-location"] for k, v in block_info.items() if k is None]
            stack_index = tuple(loc[a][0] for a in stack_axes)
            window = (*loc[y_axis], *loc[x_axis])
            out = self.denoise_tile(source, stack_index, window)
            shape = [1] * len(layout.shape)
            shape[y_axis], shape[x_axis] = out.shape
            return (out.T if self._transpose else out).reshape(shape)

        return da.map_blocks(block, chunks=tuple(chunks), dtype=np.float32,
                             meta=np.empty((0,) * len(layout.shape), np.float32))

