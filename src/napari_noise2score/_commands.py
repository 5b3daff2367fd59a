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
    from .batch import expand_inputs
    from .io.lazy import open_lazy, training_planes

    config = make_config(noise=noise, sigma=sigma, gain=gain, shape=shape, offset=offset,
                         axes=axes, max_seconds=max_seconds, max_steps=max_steps, seed=seed,
                         device=device, width=width, depth=depth, patch_size=patch_size,
                         batch_size=batch_size)
    images = [training_planes(*open_lazy(p, axes)) for p in expand_inputs(_paths(inputs))]
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

    jobs = plan_jobs(_paths(inputs), output)
    loaded = load_model(model, device).with_options(mixed_mode=mixed_mode, tta=tta)
    summary = denoise_batch(jobs, loaded, client=scheduler, workers=workers,
                            overwrite=overwrite, threads=threads, sigma=sigma, gain=gain,
                            shape=shape, axes=axes, tile=tile, overlap=overlap)
    return summary.to_dict()


def estimate_noise(inputs: str | list[str], axes: str | None = None) -> list[dict[str, Any]]:
    """Estimate the noise model and parameters of each image file: one dict per file
    (``file``, ``model``, ``sigma``, ``gain``, ``shape``, ``offset``, ``quality``...), or
    ``file`` and ``error`` for a file that cannot be read or estimated from."""
    from .api import estimate_noise as _estimate
    from .batch import expand_inputs
    from .core.errors import Noise2ScoreError
    from .io.lazy import open_lazy, training_planes

    results = []
    for path in expand_inputs(_paths(inputs)):
        try:
            estimate = _estimate(training_planes(*open_lazy(path, axes))).to_dict()
        except Noise2ScoreError as exc:  # one file's problem; the others go on
            estimate = {"error": str(exc)}
        results.append({"file": str(path), **estimate})
    return results
