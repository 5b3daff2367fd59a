"""What the dock widgets share: a magicgui Container with napari's image layers to choose
from, the axes, a status line and progress, error notices; the loss plot; helpers."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, LineEdit, ProgressBar, PushButton
from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from ..core.errors import Noise2ScoreError
from ..core.stack import infer_axes
from ._heap import hold_heap_still
from ._session import store_for


class DockPanel(Container):
    """Base of the Train and Denoise widgets. The layer box lists the viewer's image layers;
    napari calls ``reset_choices`` when layers come, go, move or are renamed (all magicgui
    widgets docked in napari are kept in step that way)."""

    def __init__(self, viewer: Any) -> None:
        super().__init__(labels=False)
        self.viewer = viewer
        self.store = store_for(viewer)
        self.worker: Any = None
        self._stop = threading.Event()
        self._last_error = ""
        self._activity: Any = None
        self.layer = ComboBox(name="layer", label="image layer", choices=self._image_layers,
                              tooltip="the image layer to use (napari's layer list)")
        self.axes = LineEdit(name="axes", label="axes", tooltip=(
            "axes of the layer, e.g. YX, TYX, ZYX; Y and X are the image plane"))
        self.progress = ProgressBar(name="progress", min=0, max=1000, value=0)
        self.progress.native.setTextVisible(False)
        self._status = Label(name="status_line", value="ready")
        #: the status line (a QLabel: ``status.text()``); wraps, never cut off
        self.status = wrapping(self._status)
        self.layer.changed.connect(self._layer_changed)
        self._gone = False
        self.native.destroyed.connect(self._destroyed)

    def _destroyed(self, *_: Any) -> None:
        self._gone = True
        self._stop.set()

    def _start(self, worker: Any, **handlers: Any) -> None:
        """Connect napari worker signals (``yielded=...``) and start it; a handler is
        skipped once the widget is gone (its Qt parts are deleted with the viewer)."""
        def guarded(handler: Any) -> Any:
            return lambda *args: None if self._gone else handler(*args)

        self.worker = worker
        for signal, handler in handlers.items():
            getattr(worker, signal).connect(guarded(handler))
        worker.errored.connect(guarded(self._error))
        worker.finished.connect(guarded(self._on_finished))
        worker.finished.connect(hold_heap_still())  # released even when the widget is gone
        self._set_running(True)
        worker.start()

    # ---- public, read-only state (for scripts and tests) -----------------------------
    @property
    def running(self) -> bool:
        """Whether a worker is training or denoising."""
        return self.worker is not None

    @property
    def stop_requested(self) -> bool:
        """Whether Stop (or closing the widget) asked the current worker to end."""
        return self._stop.is_set()

    @property
    def activity(self) -> Any:
        """The napari progress bar (activity dock) of the current run; None when idle."""
        return self._activity

    @property
    def last_error(self) -> str:
        """The text of the last error shown ('' when none)."""
        return self._last_error

    # ---- layer choice ----------------------------------------------------------------
    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def reset_choices(self, *_: Any) -> None:
        """Follow the layer list: keep the chosen layer while it exists, else choose the
        one a user means (``default_layer``)."""
        super_reset = super().reset_choices
        if not hasattr(self, "layer"):  # while being built
            return super_reset()
        before = self.layer.value
        super_reset()
        choices = self.layer.choices
        if choices:  # a renamed layer stays chosen (magicgui would choose the first one)
            keep = before is not None and before in choices
            self.layer.value = before if keep else default_layer(
                choices, self.viewer.layers.selection.active)

    def chosen_layer(self) -> Any:
        """The chosen layer; a clear error if there is none."""
        layer = self.layer.value
        if layer is None or layer not in self.viewer.layers:
            raise Noise2ScoreError("choose an image layer first (open an image or a sample)")
        return layer

    def choose_layer(self, name: str) -> None:
        """Choose the layer called ``name`` (as picking it in the box does)."""
        self.layer.value = self.viewer.layers[name]

    def axes_text(self) -> str | None:
        return self.axes.value.strip().upper() or None

    def _layer_changed(self, layer: Any) -> None:
        try:
            self.axes.value = infer_axes(layer.ndim) if layer is not None else ""
        except Noise2ScoreError:
            self.axes.value = ""

    # ---- status ----------------------------------------------------------------------
    def say(self, text: str) -> None:
        self._status.value = text

    def _error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        self._last_error = str(exc)
        self.say(f"error: {exc}")
        show_error(f"Noise2Score: {exc}")

    def _attempt(self, action: Any, *args: Any) -> bool:
        """Run ``action(*args)``; a Noise2ScoreError is shown (``_error``) and gives False."""
        try:
            action(*args)
        except Noise2ScoreError as exc:
            self._error(exc)
            return False
        return True

    def _load_dialog(self) -> None:
        if path := ask_path("r", "Load model", "", MODEL_FILES):
            self.load_model(path)

    def stop(self) -> None:
        """Ask the worker to end (Stop): training keeps the model so far; denoising leaves the
        layer unchanged."""
        self._stop.set()

    def close(self) -> None:
        """A closed widget stops its worker: nothing is added to the viewer after it."""
        self.stop()
        super().close()


def default_layer(images: Any, active: Any) -> Any:
    """The layer a user means: the active one when it is a visible image, else the top
    visible image (never a hidden reference such as the sample's clean one), else the top."""
    images = list(images)
    if active in images and active.visible:
        return active
    visible = [layer for layer in images if layer.visible]
    return (visible or images)[-1]


def wrapping(label: Label) -> Any:
    """The QLabel of a magicgui Label, made to wrap at the dock's width (never cut off)."""
    native = label.native
    native.setWordWrap(True)  # also makes its height follow its width
    policy = native.sizePolicy()
    policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)  # the dock's width, not the text's
    native.setSizePolicy(policy)
    return native


def buttons(*names: str) -> tuple[Container, list[PushButton]]:
    """A row of push buttons, and the buttons."""
    row = [PushButton(text=name) for name in names]
    return Container(layout="horizontal", widgets=row, labels=False), row


def layer_array(layer: Any) -> np.ndarray:
    """The data of an image layer, refused when it cannot be denoised."""
    if getattr(layer, "rgb", False):
        raise Noise2ScoreError(f"layer {layer.name!r} is RGB; split it into channels "
                               "(right-click > Split RGB)")
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


def engine_ready() -> bool:
    """Whether the background preload (``preload_engine``) has finished."""
    return _preloaded.is_set()


class LossPlot(QWidget):
    """A minimal live line plot of the training loss (log scale); values go through ``add``."""

    CAP = 4000

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._values: list[float] = []
        self.setMinimumHeight(80)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("training loss (moving average)")

    @property
    def values(self) -> tuple[float, ...]:
        """The plotted values (at most ``CAP``), read-only."""
        return tuple(self._values)

    def clear(self) -> None:
        self._values = []
        self.update()

    def add(self, value: float, redraw: bool = True) -> None:
        """Append a loss value (at most ``CAP`` kept: every second one is dropped when full);
        ``redraw=False`` leaves the repaint to the caller's own rate limit."""
        self._values.append(float(value))
        if len(self._values) > self.CAP:
            self._values = self._values[::2]
        if redraw:
            self.update()

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(38, 41, 48))
        values = [v for v in self._values if v > 0]
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
        label = f"loss {self._values[-1]:.4f}" if self._values else "loss"
        painter.drawText(self.rect().adjusted(6, 4, -6, -4),
                         Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignRight, label)
        painter.end()


def ask_path(mode: str, caption: str, start: str, filters: str) -> str:
    """A file chosen in magicgui's file dialog ('' when cancelled); mode 'r' or 'w'."""
    from magicgui.application import use_app

    show = use_app().get_obj("show_file_dialog")
    return show(mode, caption, start, filters) or ""


MODEL_FILES = ("Noise2Score model (*.n2s *.zip);;bioimage.io package (*.zip);;"
               "All files (*)")


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"
