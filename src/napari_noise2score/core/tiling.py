"""Denoising arrays larger than memory, tile by tile: ``TiledDenoiser`` and its tile choice
live in ``inference`` (under ``denoise_array``, the one tiling path), the plane layout and
window reading in ``layout``; the names stay importable from here."""

from .inference import MAX_TILES_PER_PLANE, TiledDenoiser, choose_tile, tile_grid  # noqa: F401
from .layout import PlaneLayout, read_window  # noqa: F401
