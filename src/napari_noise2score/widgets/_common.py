"""Small Qt pieces shared by the dock widgets."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, QPointF, Qt, Signal
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QComboBox, QSizePolicy, QWidget

from ..core.errors import Noise2ScoreError


class LayerPicker(QComboBox):
    """A combo box of the viewer's image layers, kept in step as layers come and go."""

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.setToolTip("image layer")
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed,
                      viewer.layers.events.reordered):
            event.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        from napari.layers import Image

        current = self.currentText()
        images = [layer for layer in self.viewer.layers if isinstance(layer, Image)]
        names = [layer.name for layer in images]
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if current in names:
            self.setCurrentText(current)
        elif names:
            self.setCurrentText(_default_layer(images, self.viewer.layers.selection.active))
        self.blockSignals(False)
        self.currentTextChanged.emit(self.currentText())

    def layer(self) -> Any:
        """The chosen layer; a clear error if there is none."""
        name = self.currentText()
        if not name or name not in self.viewer.layers:
            raise Noise2ScoreError("choose an image layer first (open an image or a sample)")
        return self.viewer.layers[name]


def _default_layer(images: list[Any], active: Any) -> str:
    """The layer a user means: the active one when it is a visible image, else the top
    visible image (a hidden reference such as the sample's clean image is never the
    default), else the top image."""
    if active in images and active.visible:
        return active.name
    visible = [layer for layer in images if layer.visible]
    return (visible or images)[-1].name


def layer_array(layer: Any) -> np.ndarray:
    """The data of an image layer, refused when it cannot be denoised."""
    if getattr(layer, "rgb", False):
        raise Noise2ScoreError(
            f"layer {layer.name!r} is RGB; split it into channels (right-click > Split RGB)"
        )
    # multiscale: the full-resolution level
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return np.asarray(data)


def is_lazy(layer: Any) -> bool:
    """Whether a layer's data is lazy (dask, zarr): not to be loaded whole into memory."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return not isinstance(data, np.ndarray)


_PRELOAD = threading.Lock()
_preloaded = threading.Event()


def preload_engine() -> None:
    """Import torch and the training/denoising code in a background thread, once, when a
    widget opens: loading compiled modules holds Python's lock for hundreds of ms, which
    would otherwise freeze the viewer at the start of the first training or denoising."""
    if _preloaded.is_set() or not _PRELOAD.acquire(blocking=False):
        return

    def load() -> None:
        try:
            import torch

            from ..core import inference, tiling, training  # noqa: F401

            # first convolution, backward and optimiser step initialise their kernels
            conv = torch.nn.Conv2d(1, 1, 3, padding=1)
            conv(torch.zeros(1, 1, 8, 8)).sum().backward()
            torch.optim.Adam(conv.parameters()).step()
        finally:
            _preloaded.set()

    threading.Thread(target=load, name="noise2score-preload", daemon=True).start()


class Relay(QObject):
    """Carries progress from a worker thread to the GUI thread (queued Qt signal)."""

    progress = Signal(int, int)


class LossPlot(QWidget):
    """A minimal live line plot of the training loss (log scale)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.values: list[float] = []
        self.setMinimumHeight(80)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("training loss (moving average)")

    def clear(self) -> None:
        self.values = []
        self.update()

    def add(self, value: float, redraw: bool = True) -> None:
        """Append a loss value (at most 4,000 are kept: every second one is dropped when
        full, so drawing stays cheap on long runs); ``redraw=False`` leaves the repaint to
        the caller's own rate limit."""
        self.values.append(float(value))
        if len(self.values) > 4000:
            self.values = self.values[::2]
        if redraw:
            self.update()

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(38, 41, 48))
        values = [v for v in self.values if v > 0]
        if len(values) >= 2:
            y = np.log(np.asarray(values))
            lo, hi = float(y.min()), float(y.max())
            span = hi - lo or 1.0
            w, h = self.width() - 8, self.height() - 8
            points = [QPointF(4 + w * i / (len(y) - 1), 4 + h * (hi - v) / span)
                      for i, v in enumerate(y)]
            painter.setPen(QPen(QColor(120, 200, 255), 1.5))
            painter.drawPolyline(QPolygonF(points))
        painter.setPen(QColor(200, 200, 200))
        label = f"loss {self.values[-1]:.4f}" if self.values else "loss"
        painter.drawText(self.rect().adjusted(6, 4, -6, -4),
                         Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignRight, label)
        painter.end()


def ask_model_path(parent: QWidget) -> str:
    """A model file chosen by the user ('' when cancelled)."""
    from qtpy.QtWidgets import QFileDialog

    path, _ = QFileDialog.getOpenFileName(parent, "Load model", "",
                                          "Noise2Score model (*.n2s *.zip);;"
                                          "bioimage.io package (*.zip);;All files (*)")
    return path


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"
