"""napari-noise2score: self-supervised Noise2Score denoising for microscopy, napari or headless."""

from __future__ import annotations

from typing import TYPE_CHECKING

try:
    from importlib.metadata import version as _version

    __version__ = _version("napari-noise2score")
except Exception:  # pragma: no cover - source tree not installed
    __version__ = "unknown"

__all__ = ["TrainConfig", "denoise", "denoise_batch", "denoise_file", "estimate_noise",
           "export_bioimageio", "load_model", "open_lazy", "train"]

if TYPE_CHECKING:
    from .api import (
        denoise,
        denoise_file,
        estimate_noise,
        export_bioimageio,
        load_model,
        open_lazy,
        train,
    )
    from .batch import denoise_batch
    from .core.config import TrainConfig


def __getattr__(name: str):
    """Import torch-backed parts only when first used (napari loads plugins at start-up)."""
    if name in ("train", "denoise", "load_model", "denoise_file", "open_lazy", "estimate_noise",
                "export_bioimageio"):
        from . import api

        return getattr(api, name)
    if name == "denoise_batch":
        from .batch import denoise_batch

        return denoise_batch
    if name == "TrainConfig":
        from .core.config import TrainConfig

        return TrainConfig
    raise AttributeError(name)
