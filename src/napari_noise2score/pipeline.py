"""One file (or array) through a model: the single-file pipeline under the API, the batch
runners and the command line.

A model is loaded (``load_model``), bound to the data's noise when it is the pretrained
prior (``bound_model``), the input is opened lazily and cut into tiles (``plan_file``, the
one place that decides the tiling) and the result streamed plane by plane into an atomic
output (``denoise_file``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core import prior
from .core.device import select_device
from .core.errors import InputFileError, Noise2ScoreError, OutputError
from .core.inference import ProgressFn, StopFn, TiledDenoiser
from .core.layout import is_lazy
from .core.model import Noise2ScoreModel
from .core.noise import NoiseParams
from .core.stack import check_axes, image_planes, result_dtype
from .core.training import check_network_fits
from .export.bioimageio import import_package, is_package
from .io.calibration import read_calibration
from .io.chunked_writer import check_output, write_planes
from .io.lazy import close_lazy, open_lazy, training_planes
from .io.outputs import check_location, same_file

#: The options of ``denoise_file`` that decide how a file is read and tiled.
TILING_OPTIONS = ("axes", "sigma", "gain", "shape", "tile", "overlap", "memory", "dtype",
                  "series")


def load_model(path: str | os.PathLike, device: str = "auto") -> Noise2ScoreModel:
    """Read a model saved with ``model.save(path)``, a bioimage.io package (.zip) this
    plugin exported (validated first; ModelFileError when foreign or altered), or
    ``"pretrained"`` (no file of that name): the shipped prior, which ``denoise`` binds to
    the data's noise (``sigma`` given, else estimated) and intensity scale."""
    if str(path) == prior.PRETRAINED and not Path(path).exists():
        return prior.unbound_model(select_device(device))
    if is_package(path):
        return import_package(path, select_device(device))
    return Noise2ScoreModel.load(path, select_device(device))


def sample_planes(data, axes) -> list[np.ndarray]:
    """A bounded sample of the 2D planes of ``data`` (numpy or dask), for the noise."""
    if data is None:
        raise Noise2ScoreError("the pretrained prior needs the image to find its noise")
    if is_lazy(data):
        return list(training_planes(data, check_axes(axes, data.ndim), max_bytes=64 * 2**20))
    planes = image_planes(data, axes)
    return list(planes[:: max(1, len(planes) // 16)])


def bound_model(model, sigma=None, gain=None, shape=None, data=None,
                axes=None) -> tuple[Noise2ScoreModel, NoiseParams]:
    """A loaded model (from a model or a file) and its noise parameters with overrides; the
    pretrained prior bound to ``data`` (a noise-conditioned model told a new sigma)."""
    if not isinstance(model, Noise2ScoreModel):
        model = load_model(model)
    if prior.is_unbound(model):
        model, _ = prior.bind(model, sample_planes(data, axes), sigma, gain, shape)
    model = prior.rebind(model, sigma)
    return model, model.noise_params(sigma=sigma, gain=gain, shape=shape)


def bind_to_files(model: Noise2ScoreModel, paths: Sequence[str | os.PathLike],
                  axes: str | None = None, series: int | None = None,
                  sigma: float | None = None, gain: float | None = None,
                  shape: float | None = None) -> tuple[Noise2ScoreModel, str | None]:
    """The pretrained prior bound to the noise of image files (``sigma`` given, else
    estimated on a bounded sample of all of them) and their intensity scale, with a line
    saying so; a noise-conditioned model told ``sigma``; any other model unchanged."""
    if not prior.is_unbound(model):
        return prior.rebind(model, sigma), None
    budget = 64 * 2**20 // max(1, len(paths))
    planes = [p for path in paths
              for p in training_planes(*open_lazy(path, axes, series), budget)]
    return prior.bind(model, planes, sigma, gain, shape)


@dataclass(frozen=True)
class FilePlan:
    """An input opened lazily and how it is denoised: the model (bound to its noise), the
    noise parameters, the tiling and the result's type. ``close()`` releases the input."""

    data: Any
    axes: str
    model: Noise2ScoreModel
    noise: NoiseParams
    tiler: TiledDenoiser
    dtype: np.dtype

    def close(self) -> None:
        close_lazy(self.data)


def plan_file(path: str | os.PathLike, model, output: str | os.PathLike | None = None, *,
              bind: bool = True, axes: str | None = None, sigma: float | None = None,
              gain: float | None = None, shape: float | None = None, tile: int | None = None,
              overlap: int | None = None, memory: int | None = None, dtype: str = "float32",
              series: int | None = None) -> FilePlan:
    """Open ``path`` and decide how it is denoised, the same way for every runner. ``bind``:
    bind the pretrained prior to the file's noise here (False: the model's noise as it is,
    for a model already sent to a cluster); ``output``, when given, is checked first."""
    data, axes = open_lazy(path, axes, series)
    try:
        if bind:
            model, noise = bound_model(model, sigma, gain, shape, data, axes)
        else:
            noise = model.noise_params(sigma=sigma, gain=gain, shape=shape)
        out_dtype = result_dtype(dtype, data.dtype)
        if output is not None:
            check_output(Path(output), data.size * out_dtype.itemsize, [Path(path)])
        tiler = TiledDenoiser(model, data.shape, axes, noise, tile, overlap, memory)
    except BaseException:
        close_lazy(data)
        raise
    return FilePlan(data, axes, model, noise, tiler, out_dtype)


def plan_options(path: str | os.PathLike, model, output=None, bind: bool = True,
                 **options) -> FilePlan:
    """``plan_file`` with the denoising options as a dict (unknown ones refused)."""
    unknown = sorted(set(options) - set(TILING_OPTIONS))
    if unknown:
        raise Noise2ScoreError(f"unknown denoising options: {', '.join(unknown)}")
    return plan_file(path, model, output, bind=bind, **options)


def denoise_file(path: str | os.PathLike, model: Noise2ScoreModel | str | os.PathLike,
                 output: str | os.PathLike, progress: ProgressFn | None = None,
                 stop: StopFn | None = None, threads: int | None = None, **options) -> Path:
    """Denoise an image file here, streaming: ``api.denoise_file`` without a cluster (the
    ``options`` are ``TILING_OPTIONS``)."""
    path, output = Path(path), Path(output)
    before = _version(path)
    plan = plan_options(path, model, output, **options)
    try:
        layout = plan.tiler.layout
        with torch_threads(threads):
            planes = _unchanged(plan.tiler.iter_planes(plan.data, progress, stop), path,
                                before)
            return write_planes(output, planes, layout.stack_shape, layout.plane_shape,
                                layout.planes_axes, plan.dtype,
                                read_calibration(path, options.get("series")))
    finally:
        plan.close()


def _version(path: Path) -> tuple[int, int] | None:
    """(modification time, size) of a file, None when it is gone."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _unchanged(planes, path: Path, before: tuple[int, int] | None):
    """The planes; then InputFileError (so nothing is kept) if the input was changed,
    truncated or deleted while it was read (a memory-mapped file may read on regardless)."""
    yield from planes
    if _version(path) != before:
        raise InputFileError(f"{path} changed while it was denoised (deleted, truncated or "
                             "rewritten); nothing was written, run it again")


def check_model_output(path: str | os.PathLike, config, inputs: Sequence[str | os.PathLike],
                       outputs: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse, before training, a model file that would replace an input or an image
    output, sits where a folder is or in a read-only folder, or has no room on its disk;
    and a network that cannot fit in memory (``core.training.check_network_fits``)."""
    for output in outputs:
        if same_file(path, output):
            raise OutputError(f"the model file {path} and the denoised output are the same file")
    nbytes = check_network_fits(config, select_device(config.device).type)
    check_location(path, nbytes + 2**16, inputs, what="model file")


def set_torch_threads(threads: int | None) -> None:
    """Set torch's intra-op threads of this process (None: leave them)."""
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise Noise2ScoreError(f"threads must be >= 1, not {threads}")


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run a block with ``threads`` torch threads (process-wide), then restore the count."""
    check_threads(threads)
    before = torch.get_num_threads()
    set_torch_threads(threads)
    try:
        yield
    finally:
        set_torch_threads(before)
