"""The Python API: train, denoise and load models, on arrays, with no viewer."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from . import pipeline
from .core import blind
from .core.blind import BlindResult
from .core.config import AUTO, TrainConfig
from .core.errors import Noise2ScoreError
from .core.estimation import estimate_noise as _estimate
from .core.inference import ProgressFn, StopFn, TiledDenoiser, denoise_array
from .core.layout import is_lazy
from .core.model import Noise2ScoreModel
from .core.noise import check_applicable, model_for
from .core.stack import cast_result, check_axes, image_planes, result_dtype
from .core.training import TrainProgress, train_model
from .export.bioimageio import export_package
from .io.lazy import open_lazy, training_planes
from .pipeline import bind_to_files, load_model

__all__ = ["bind_to_files", "blind_search", "denoise", "denoise_file", "estimate_noise",
           "export_bioimageio", "load_model", "make_config", "open_lazy", "train"]

_CONFIG_FIELDS = {f.name for f in fields(TrainConfig)}


def make_config(config: TrainConfig | None = None, **overrides) -> TrainConfig:
    """A validated TrainConfig: ``config`` (or the defaults) with keyword overrides applied.
    Noise parameters given without a noise model name it (``core.noise.model_for``: ``sigma``
    alone Gaussian, ``gain`` Poisson, both Poisson-Gaussian, ``shape`` Gamma), else ``auto``."""
    unknown = sorted(set(overrides) - _CONFIG_FIELDS)
    if unknown:
        raise Noise2ScoreError(f"unknown training options: {', '.join(unknown)}")
    given = {k: overrides.get(k) for k in ("sigma", "gain", "shape")}
    base = config or TrainConfig()
    if overrides.get("noise") is None:
        overrides.pop("noise", None)
        if base.noise == AUTO and model_for(**given):  # explicit parameters win over auto
            overrides["noise"] = model_for(**given)
    check_applicable(overrides.get("noise", base.noise), **given)
    return replace(base, **overrides)  # validated on construction


def train(images: np.ndarray | Sequence[np.ndarray], config: TrainConfig | None = None,
          on_progress: Callable[[TrainProgress], None] | None = None,
          stop: Callable[[], bool] | None = None, **options) -> Noise2ScoreModel:
    """Learn the score of noisy ``images`` (one array or several) and return the model;
    options are TrainConfig fields, e.g. ``train(stack, noise="gaussian", sigma=25)``."""
    return train_model(images, make_config(config, **options), on_progress, stop)


def estimate_noise(images: np.ndarray | Sequence[np.ndarray], axes: str | None = None):
    """Estimate the noise model and parameters (image units) of one array or several: a
    NoiseEstimate (``.model``, ``.sigma``, ``.gain``, ``.shape``, ``.offset``, ``.correlation``
    of neighbouring noise pixels, ``.quality`` from 0 to 1)."""
    arrays = [images] if isinstance(images, np.ndarray) else list(images)
    return _estimate([image_planes(array, axes) for array in arrays])


def export_bioimageio(model: Noise2ScoreModel | str | os.PathLike, path: str | os.PathLike,
                      image: np.ndarray | None = None, name: str | None = None,
                      description: str | None = None, authors: Sequence[str] | None = None,
                      training_data: str | None = None, license: str = "CC-BY-4.0",
                      tta: bool = False) -> Path:
    """Write a model (or model file) as a bioimage.io model package ``path`` (.zip): the
    whole denoiser as one TorchScript module (``tta``: averaged over the 8 flips and turns),
    its test pair from ``image`` (else a synthetic image with the model's noise). Needs the
    ``bioimageio`` extra; a model the export cannot reproduce exactly raises ExportError."""
    if not isinstance(model, Noise2ScoreModel):
        model = load_model(model, "cpu")
    return export_package(model, path, image, name, description, authors, training_data,
                          license, tta)[0]


def denoise(data: np.ndarray, model: Noise2ScoreModel | str | os.PathLike,
            axes: str | None = None, sigma: float | None = None, gain: float | None = None,
            shape: float | None = None, tile: int | None = None, overlap: int | None = None,
            progress: ProgressFn | None = None, stop: StopFn | None = None,
            dtype: str = "float32") -> np.ndarray:
    """Denoise ``data`` with a model (or a model file), in the input's units: float32, or
    with ``dtype="same"`` the input's type (integers rounded and clipped to its range).
    ``sigma``, ``gain`` and ``shape`` override the model's noise parameters; ``tile`` and
    ``overlap`` default to what fits in memory and the network's receptive field. A dask
    array gives a lazy dask array back (tiles denoised when computed; no ``progress`` or
    ``stop``); any other array is denoised now."""
    data = data if is_lazy(data) else np.asarray(data)
    out_dtype = result_dtype(dtype, data.dtype)
    model, params = pipeline.bound_model(model, sigma, gain, shape, data, axes)
    if is_lazy(data):
        lazy = TiledDenoiser(model, data.shape, axes, params, tile, overlap).as_dask(data)
        return lazy.map_blocks(cast_result, out_dtype, dtype=out_dtype)
    result = denoise_array(model, data, axes, params, tile, overlap, progress, stop)
    return cast_result(result, out_dtype)


def blind_search(model: Noise2ScoreModel | str | os.PathLike, image: np.ndarray,
                 axes: str | None = None, method: str = "search",
                 grid: Sequence[float] | None = None,
                 max_pixels: int | None = None) -> BlindResult:
    """Find the model's noise parameter for ``image`` at test time (blind Tweedie), on a
    bounded sample of its planes: ``method="search"``, the grid value (input units; default
    around the training value) whose result minimises the quality criterion; ``"score"``,
    read from the learned score (Gaussian and Gamma models). Returns a BlindResult; denoise
    with ``denoise(image, model, **{r.parameter: r.value})``."""
    if not isinstance(model, Noise2ScoreModel):
        model = load_model(model)
    limit = blind.MAX_PIXELS if max_pixels is None else max_pixels
    if is_lazy(image):
        planes = training_planes(image, check_axes(axes, image.ndim), max_bytes=4 * limit)
    else:
        planes = image_planes(image, axes)
    return blind.find_parameter(model, planes, method, grid, limit)


def denoise_file(path: str | os.PathLike, model: Noise2ScoreModel | str | os.PathLike,
                 output: str | os.PathLike, axes: str | None = None, sigma: float | None = None,
                 gain: float | None = None, shape: float | None = None, tile: int | None = None,
                 overlap: int | None = None, memory: int | None = None,
                 progress: ProgressFn | None = None, stop: StopFn | None = None, client=None,
                 threads: int | None = None, dtype: str = "float32",
                 series: int | None = None) -> Path:
    """Denoise an image file of any size into ``output`` (.tif/.tiff or .zarr), streaming:
    read tile by tile, written plane by plane (float32, or the input's type with
    ``dtype="same"``; stack axes first, then Y and X; a TIFF keeps the input's calibration).

    ``series``: the image series of a TIFF that holds several. ``tile`` defaults to what
    fits in ``memory`` bytes (default: from the available memory), ``overlap`` to the
    receptive field. ``progress(tiles_done, tiles_total)`` is called after each tile;
    ``stop()`` is polled before each and ends the run with ``Cancelled``, leaving no output.
    ``client`` (a ``distributed.Client`` or a scheduler address) denoises the tiles on the
    cluster's workers (same tiles and result; the output is written here). ``threads``
    fixes torch's threads (here, or on each worker): results are bit-identical for the same
    count."""
    options = {"axes": axes, "sigma": sigma, "gain": gain, "shape": shape, "tile": tile,
               "overlap": overlap, "memory": memory, "dtype": dtype, "series": series}
    if client is None:
        return pipeline.denoise_file(path, model, output, progress, stop, threads, **options)
    from .batch.cluster import denoise_file_on_cluster  # lazy: distributed, clusters only

    if not isinstance(model, Noise2ScoreModel):
        model = load_model(model)
    if model.conditioned:  # bound to the file's noise here, once
        model, _ = pipeline.bound_model(model, sigma, gain, shape, *open_lazy(path, axes, series))
    return denoise_file_on_cluster(client, path, model, output, threads=threads,
                                   progress=progress, stop=stop, **options)
