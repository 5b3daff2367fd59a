"""npe2 commands ``napari-noise2score.train``, ``.denoise`` and ``.estimate_noise``.

Plain functions of typed values (paths as str, numbers), runnable with no viewer and no
display::

    from npe2 import PluginManager
    pm = PluginManager.instance(); pm.discover()
    pm.commands.execute("napari-noise2score.denoise",
                        kwargs={"inputs": "raw/*.tif", "model": "m.n2s", "output": "out"})

Nothing here imports Qt or napari.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _paths(inputs: str | list[str]) -> list[str]:
    return [inputs] if isinstance(inputs, str) else [str(p) for p in inputs]


def train(
    inputs: str | list[str],
    output: str,
    noise: str = "gaussian",
    sigma: float | None = None,
    gain: float | None = None,
    shape: float | None = None,
    offset: float = 0.0,
    axes: str | None = None,
    max_seconds: float | None = 120.0,
    max_steps: int | None = None,
    seed: int = 0,
    device: str = "auto",
    width: int | None = None,
    depth: int | None = None,
    patch_size: int = 64,
    batch_size: int = 16,
) -> str:
    """Train on image files (files, folders, globs) and save the model to ``output``.

    Returns the model file's path.
    """
    from dataclasses import replace

    from .api import make_config
    from .api import train as _train
    from .batch import check_model_output, expand_inputs
    from .io.lazy import open_lazy, training_planes

    config = make_config(noise=noise, sigma=sigma, gain=gain, shape=shape, offset=offset,
                         axes=axes, max_seconds=max_seconds, max_steps=max_steps, seed=seed,
                         device=device, width=width, depth=depth, patch_size=patch_size,
                         batch_size=batch_size)
    paths = expand_inputs(_paths(inputs))
    check_model_output(output, config, paths)
    images = [training_planes(*open_lazy(p, axes)) for p in paths]
    model = _train(images, replace(config, axes=None))
    model.config = replace(model.config, axes=axes)
    return str(model.save(output))


def denoise(
    inputs: str | list[str],
    model: str,
    output: str,
    sigma: float | None = None,
    gain: float | None = None,
    shape: float | None = None,
    axes: str | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    scheduler: str | None = None,
    workers: int = 1,
    overwrite: bool = False,
    device: str = "auto",
    tta: bool | None = None,
    mixed_mode: str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Denoise image files (files, folders, globs) with a model file into ``output`` (a
    folder, or one .tif/.zarr for one input), as a resumable batch.

    ``scheduler``: a dask.distributed address to spread the files over (and the tiles of a
    single large file). ``tta`` and ``mixed_mode`` override the model's settings;
    ``threads`` fixes torch's thread count (reproducible results). Returns the summary
    as a dict: ``done`` and ``skipped`` (output paths), ``failed`` ({input: error}),
    ``seconds``.
    """
    from .api import load_model
    from .batch import denoise_batch, plan_jobs

    jobs = plan_jobs(_paths(inputs), output, protect=[model])
    loaded = load_model(model, device).with_options(mixed_mode=mixed_mode, tta=tta)
    summary = denoise_batch(jobs, loaded, client=scheduler, workers=workers,
                            overwrite=overwrite, threads=threads, sigma=sigma, gain=gain,
                            shape=shape, axes=axes, tile=tile, overlap=overlap)
    return summary.to_dict()


def estimate_files(inputs, axes: str | None = None) -> list[tuple[Path, Any, str | None]]:
    """``(path, estimate, None)`` for each image file of ``inputs`` (files, folders, globs),
    or ``(path, None, error)`` for one that cannot be read or estimated from: one file's
    problem does not stop the others."""
    from .api import estimate_noise as _estimate
    from .batch import expand_inputs
    from .core.errors import Noise2ScoreError
    from .io.lazy import open_lazy, training_planes

    results: list[tuple[Path, Any, str | None]] = []
    for path in expand_inputs(inputs):
        try:
            results.append((path, _estimate(training_planes(*open_lazy(path, axes))), None))
        except Noise2ScoreError as exc:
            results.append((path, None, str(exc)))
    return results


def estimate_noise(inputs: str | list[str], axes: str | None = None) -> list[dict[str, Any]]:
    """Estimate the noise model and parameters of each image file: one dict per file
    (``file``, ``model``, ``sigma``, ``gain``, ``shape``, ``offset``, ``quality``...), or
    ``file`` and ``error`` for a file that cannot be read or estimated from."""
    return [{"file": str(path), **(estimate.to_dict() if error is None else {"error": error})}
            for path, estimate, error in estimate_files(_paths(inputs), axes)]
