"""Denoising arrays larger than memory, tile by tile: the names of ``inference`` (the one
tiling path, ``TiledDenoiser``) and ``layout`` (planes and windows), importable from here."""

from .inference import MAX_TILES_PER_PLANE, TiledDenoiser, choose_tile, tile_grid  # noqa: F401
from .layout import PlaneLayout, read_window  # noqa: F401
