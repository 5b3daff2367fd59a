"""npe2 writer and the lazy denoised layer: "compute and save" streams a (lazy) layer to disk.

A lazy denoised layer (``denoised_layer``) is computed only where napari shows it; saving it
with this writer (File > Save Selected Layers, choosing napari-noise2score) computes it
plane by plane into a TIFF or zarr, never holding the whole result.
"""

from __future__ import annotations

import os
from typing import Any


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Write one image layer plane by plane (float32) to .tif/.tiff or .zarr."""
    from pathlib import Path

    from .core.layout import PlaneLayout
    from .core.stack import check_axes
    from .io.chunked_writer import check_output, write_planes

    axes = check_axes((meta.get("metadata") or {}).get("axes"), data.ndim)
    layout = PlaneLayout(tuple(data.shape), axes)
    source = (meta.get("metadata") or {}).get("path")
    check_output(Path(path), int(data.size) * 4, [Path(source)] if source else [])
    full = (slice(None), slice(None))
    planes = (layout.read(data, i, *full).astype("float32") for i in layout.plane_indices())
    write_planes(path, planes, layout.stack_shape, layout.plane_shape, layout.planes_axes)
    return [path]


def denoised_layer(data: Any, model: Any, axes: str | None = None, name: str = "denoised",
                   tile: int | None = None, overlap: int | None = None) -> tuple:
    """A lazy denoised image layer (LayerDataTuple) of ``data`` (any array, dask included)
    with a model or model file: tiles are denoised when napari displays them."""
    import dask.array as da

    from .api import load_model
    from .core.inference import TiledDenoiser
    from .core.layout import is_lazy

    if isinstance(model, str | os.PathLike):
        model = load_model(model)
    if not is_lazy(data):
        data = da.from_array(data)
    tiler = TiledDenoiser(model, data.shape, axes, None, tile, overlap)
    result = tiler.as_dask(data)
    return result, {"name": name, "metadata": {"axes": tiler.layout.axes}}, "image"
