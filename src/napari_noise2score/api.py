"""The Python API: train, denoise and load models, on arrays, with no viewer."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import fields, replace

import numpy as np

from .core.config import TrainConfig
from .core.device import select_device
from .core.errors import Noise2ScoreError
from .core.inference import DEFAULT_TILE, ProgressFn, StopFn, denoise_array
from .core.model import Noise2ScoreModel
from .core.training import TrainProgress, train_model

_CONFIG_FIELDS = {f.name for f in fields(TrainConfig)}


def make_config(config: TrainConfig | None = None, **overrides) -> TrainConfig:
    """A validated TrainConfig: ``config`` (or the defaults) with keyword overrides applied."""
    unknown = sorted(set(overrides) - _CONFIG_FIELDS)
    if unknown:
        raise Noise2ScoreError(f"unknown training options: {', '.join(unknown)}")
    return replace(config or TrainConfig(), **overrides).validate()


def train(
    images: np.ndarray | Sequence[np.ndarray],
    config: TrainConfig | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
    stop: Callable[[], bool] | None = None,
    **options,
) -> Noise2ScoreModel:
    """Learn the score of noisy ``images`` (one array or several) and return the model.

    Options are TrainConfig fields, e.g. ``train(stack, noise="gaussian", sigma=25,
    max_seconds=60)``; noise parameters are in the images' own intensity units.
    """
    return train_model(images, make_config(config, **options), on_progress, stop)


def load_model(path: str | os.PathLike, device: str = "auto") -> Noise2ScoreModel:
    """Read a model saved with ``model.save(path)``."""
    return Noise2ScoreModel.load(path, select_device(device))


def denoise(
    data: np.ndarray,
    model: Noise2ScoreModel | str | os.PathLike,
    axes: str | None = None,
    sigma: float | None = None,
    gain: float | None = None,
    shape: float | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    progress: ProgressFn | None = None,
    stop: StopFn | None = None,
) -> np.ndarray:
    """Denoise ``data`` with a model (or a model file); float32 in the input's units.

    ``sigma``, ``gain`` and ``shape`` override the model's noise parameters.
    """
    if not isinstance(model, Noise2ScoreModel):
        model = load_model(model)
    params = model.noise_params(sigma=sigma, gain=gain, shape=shape)
    return denoise_array(model, data, axes, params, tile, overlap, progress, stop)
