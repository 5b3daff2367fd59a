"""npe2 commands ``napari-noise2score.train``, ``.denoise`` and ``.estimate_noise``.

Plain functions of typed values (paths as str, numbers), runnable with no viewer and no
display::

    from npe2 import PluginManager
    pm = PluginManager.instance(); pm.discover()
    pm.commands.execute("napari-noise2score.denoise",
                        kwargs={"inputs": "raw/*.tif", "model": "m.n2s", "output": "out"})

Every argument is checked and converted at this boundary by the command's annotations
(numbers given as strings are converted; a wrong type, a missing or an unknown parameter
is refused), and every error is a Noise2ScoreError worded in parameters, not options.
Nothing here imports Qt or napari.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .core.errors import Noise2ScoreError

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _paths(inputs: str | list[str]) -> list[str]:
    return [inputs] if isinstance(inputs, str) else [str(p) for p in inputs]


def in_parameter_terms(message: str) -> str:
    """A message written for the command line, worded for keyword parameters: ``--series N``
    becomes ``series=N``, a bare ``--max-seconds`` "the max_seconds parameter"."""
    def word(match: re.Match) -> str:
        name, value = match.group(1).replace("-", "_"), match.group(2)
        return f"{name}={value}" if value else f"the {name} parameter"

    return re.sub(r"--([a-z][a-z0-9-]*)(?: ([A-Z0-9][\w.]*))?", word, message)


def _convert(command: str, name: str, value: Any, hint: Any) -> Any:
    """``value`` as the annotation ``hint`` wants it, or a Noise2ScoreError naming ``name``."""
    kinds = typing.get_args(hint) or (hint,)
    if value is None:
        if type(None) in kinds:
            return None
        raise Noise2ScoreError(f"{command}: {name} is required (got None)")
    shown = f"{value!r} ({type(value).__name__})"
    if list[str] in kinds:  # paths: one, or a non-empty list
        many = value if isinstance(value, list | tuple) else [value]
        if not many or not all(isinstance(v, str | os.PathLike) for v in many):
            raise Noise2ScoreError(
                f"{command}: {name} must be a path or a list of paths, got {shown}")
        paths = [os.fspath(v) for v in many]
        return paths if isinstance(value, list | tuple) else paths[0]
    if bool in kinds:
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise Noise2ScoreError(f"{command}: {name} must be True or False, got {shown}")
    for kind, label in ((int, "an integer"), (float, "a number")):
        if kind not in kinds:
            continue
        try:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError
            number = float(value)
            if kind is int:
                if not number.is_integer():
                    raise ValueError
                return int(number)
            return number
        except (ValueError, OverflowError):
            raise Noise2ScoreError(f"{command}: {name} must be {label}, got {shown}") from None
    if str in kinds:
        if isinstance(value, str | os.PathLike):
            return os.fspath(value)
        raise Noise2ScoreError(f"{command}: {name} must be a string, got {shown}")
    return value  # pragma: no cover - every annotation above is handled


def _command(func: Callable) -> Callable:
    """The npe2 boundary of a command: every argument checked and converted by ``func``'s
    annotations, unknown or missing ones refused, errors in parameter terms."""
    signature = inspect.signature(func)
    hints = typing.get_type_hints(func)
    command = f"napari-noise2score.{func.__name__}"

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        unknown = sorted(set(kwargs) - set(signature.parameters))
        if unknown:
            raise Noise2ScoreError(
                f"{command}: unknown parameter(s) {', '.join(unknown)}; it takes "
                f"{', '.join(signature.parameters)}")
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:  # missing required, or too many positional arguments
            raise Noise2ScoreError(f"{command}: {exc}") from None
        values = {n: _convert(command, n, v, hints[n]) for n, v in bound.arguments.items()}
        try:
            return func(**values)
        except Noise2ScoreError as exc:
            raise type(exc)(in_parameter_terms(str(exc))) from None
        except OSError as exc:  # e.g. a folder where a file is wanted
            raise Noise2ScoreError(f"{command}: cannot use {exc.filename or 'a path'}: "
                                   f"{exc.strerror or exc}") from None

    return checked


@_command
def train(inputs: str | list[str], output: str, noise: str | None = None,
          sigma: float | None = None, gain: float | None = None, shape: float | None = None,
          offset: float = 0.0, mixed_mode: str = "gaussian-then-poisson",
          transform: str | None = None, axes: str | None = None,
          max_seconds: float | None = 120.0, max_steps: int | None = None, seed: int = 0,
          device: str = "auto", width: int | None = None, depth: int | None = None,
          decorrelate: int | None = None, patch_size: int = 64, batch_size: int = 16,
          learning_rate: float = 1e-3, series: int | None = None, init: str = "auto") -> str:
    """Train on image files (files, folders, globs) and save the model to ``output``; return
    its path. The options are TrainConfig's, with its defaults (a test checks): ``noise``
    None is "auto" unless the parameters given name a model (``api.make_config``),
    ``transform`` None is chosen for the noise; ``series``: the image series of TIFFs that
    hold several."""
    from dataclasses import replace

    from .api import make_config
    from .api import train as _train
    from .batch import check_model_output, expand_inputs
    from .core.config import TRAIN_OPTIONS
    from .io.lazy import open_lazy, training_planes

    config = make_config(**{k: v for k, v in locals().items() if k in TRAIN_OPTIONS})
    paths = expand_inputs(_paths(inputs))
    check_model_output(output, config, paths)
    images = [training_planes(*open_lazy(p, axes, series)) for p in paths]
    model = _train(images, replace(config, axes=None))
    model.config = replace(model.config, axes=axes)
    return str(model.save(output))


@_command
def denoise(inputs: str | list[str], model: str, output: str, sigma: float | None = None,
            gain: float | None = None, shape: float | None = None, axes: str | None = None,
            tile: int | None = None, overlap: int | None = None, scheduler: str | None = None,
            workers: int = 1, overwrite: bool = False, device: str = "auto",
            tta: bool | None = None, mixed_mode: str | None = None, threads: int | None = None,
            dtype: str = "float32", series: int | None = None,
            wiener: bool | None = None) -> dict[str, Any]:
    """Denoise image files (files, folders, globs) with a model file (or "pretrained": the
    shipped prior, its noise estimated unless given) into ``output`` (a folder, or one
    .tif/.zarr for one input), as a resumable batch. ``scheduler``: a dask.distributed
    address to spread the files (or a large file's tiles) over; ``tta``, ``wiener`` and
    ``mixed_mode`` override the model's; ``threads`` fixes torch's thread count
    (reproducible results); ``dtype`` "same" writes the inputs' type; ``series``: the image
    series of TIFFs that hold several. Returns the summary as a dict: ``done`` and
    ``skipped`` (output paths), ``failed`` ({input: error}), ``seconds``."""
    from .api import bind_to_files, load_model
    from .batch import denoise_batch, plan_jobs

    jobs = plan_jobs(_paths(inputs), output, protect=[model])
    loaded = load_model(model, device).with_options(mixed_mode=mixed_mode, tta=tta,
                                                    wiener=wiener)
    loaded, _ = bind_to_files(loaded, [j.source for j in jobs], axes, series, sigma, gain,
                              shape)  # model "pretrained": the shipped prior
    summary = denoise_batch(jobs, loaded, client=scheduler, workers=workers,
                            overwrite=overwrite, threads=threads, sigma=sigma, gain=gain,
                            shape=shape, axes=axes, tile=tile, overlap=overlap, dtype=dtype,
                            series=series)
    result = summary.to_dict()
    result["failed"] = {k: in_parameter_terms(v) for k, v in result["failed"].items()}
    return result


def estimate_files(inputs, axes: str | None = None,
                   series: int | None = None) -> list[tuple[Path, Any, str | None]]:
    """``(path, estimate, None)`` for each image file of ``inputs`` (files, folders, globs),
    or ``(path, None, error)``: one file's problem does not stop the others."""
    from .api import estimate_noise as _estimate
    from .batch import expand_inputs
    from .io.lazy import open_lazy, training_planes

    results: list[tuple[Path, Any, str | None]] = []
    for path in expand_inputs(inputs):
        try:
            results.append((path, _estimate(training_planes(*open_lazy(path, axes, series))),
                            None))
        except Noise2ScoreError as exc:
            results.append((path, None, str(exc)))
    return results


@_command
def estimate_noise(inputs: str | list[str], axes: str | None = None,
                   series: int | None = None) -> list[dict[str, Any]]:
    """Estimate the noise model and parameters of each image file: one dict per file
    (``file``, ``model``, ``sigma``, ``gain``, ``shape``, ``offset``, ``quality``...), or
    ``file`` and ``error`` for a file that cannot be read or estimated from. ``series``
    chooses the image series of TIFFs that hold several."""
    return [{"file": str(path), **(estimate.to_dict() if error is None
                                   else {"error": in_parameter_terms(error)})}
            for path, estimate, error in estimate_files(_paths(inputs), axes, series)]
