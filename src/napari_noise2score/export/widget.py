"""The Train widget's Export: a package whose test pair comes from the training layer."""

from __future__ import annotations

import os
from typing import Any

from ..core.model import Noise2ScoreModel
from ..core.stack import check_axes
from ..io.lazy import training_planes
from .bioimageio import TEST_SIZE, export_package


def export_from_viewer(viewer: Any, model: Noise2ScoreModel, path: str | os.PathLike,
                       layer_name: str | None) -> None:
    """Export ``model``; the layer it was trained on (when still open) gives the test image
    (one plane, at most TEST_SIZE pixels on a side, read even from a lazy layer)."""
    image, data_text = None, None
    if layer_name is not None and layer_name in viewer.layers:
        layer = viewer.layers[layer_name]
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        axes = model.config.axes if model.config.axes and \
            len(model.config.axes) == data.ndim else None
        image = training_planes(data, check_axes(axes, data.ndim),
                                max_bytes=4 * TEST_SIZE * TEST_SIZE)
        data_text = (f"The napari layer {layer_name!r} (shape {tuple(data.shape)}, "
                     f"{data.dtype}).")
    export_package(model, path, image, training_data=data_text)
