"""Denoising arrays larger than memory, tile by tile: the names kept at their old place.

``TiledDenoiser`` and its tile choice live in ``inference`` (under ``denoise_array``, the one
tiling path); the plane layout and window reading in ``stack``.
"""

from .inference import (  # noqa: F401
    MAX_TILE,
    MAX_TILES_PER_PLANE,
    MEASURED_BYTES_PER_PIXEL,
    TILE_MEMORY_CAP,
    TiledDenoiser,
    choose_tile,
    tile_grid,
)
from .stack import PlaneLayout, read_window  # noqa: F401
