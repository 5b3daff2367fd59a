"""The Denoise dock widget: apply the current model to a layer, as a new layer or in place."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import Cancelled, Noise2ScoreError
from ..core.inference import DEFAULT_TILE, TTA_AUTO_PIXELS
from ..core.prior import is_unbound, rebind
from ..core.stack import infer_axes
from ._common import (
    LayerPicker,
    Relay,
    ask_model_path,
    is_lazy,
    layer_array,
    preload_engine,
)
from ._session import store_for

NEW_LAYER, IN_PLACE = "new layer", "in place (undoable)"
#: Choices of the "quality" field and the model's tta setting they give (None: by size).
QUALITY = {"auto": None, "best (8-fold average)": True, "fast (one pass)": False}


PRIOR_TEXT = ("none trained: the pretrained prior, instant (Gaussian noise; sigma 0 = "
              "estimate it from the layer); train for a better one")


class DenoiseWidget(QWidget):
    """Denoise an image layer with the model trained (or loaded) in this viewer."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.store = store_for(napari_viewer)
        self.worker: Any = None
        self._stop = threading.Event()
        self._undo: list[tuple[str, Any]] = []
        self.last_error = ""
        self.destroyed.connect(self._stop.set)
        preload_engine()
        self.relay = Relay()

        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        self.load_button = QPushButton("Load model…")
        self.layer_picker = LayerPicker(napari_viewer)
        self.axes = QLineEdit()
        self.params: dict[str, QDoubleSpinBox] = {}
        self._param_labels: dict[str, QLabel] = {}
        form = QFormLayout()
        form.addRow("model", self.model_label)
        form.addRow("", self.load_button)
        form.addRow("image layer", self.layer_picker)
        form.addRow("axes", self.axes)
        for name, decimals in (("sigma", 4), ("gain", 4), ("shape", 2)):
            box = QDoubleSpinBox()
            box.setDecimals(decimals)
            box.setRange(0.0, 1e9)
            label = QLabel(name)
            self.params[name], self._param_labels[name] = box, label
            form.addRow(label, box)
        self.output = QComboBox()
        self.output.addItems([NEW_LAYER, IN_PLACE])
        self.tile = QSpinBox()
        self.tile.setRange(16, 16384)
        self.tile.setValue(DEFAULT_TILE)
        self.tile.setSuffix(" px")
        self.tile.setToolTip("tile size: smaller tiles use less memory")
        self.tta = QComboBox()
        self.tta.addItems(list(QUALITY))
        self.tta.setToolTip(
            "best: the score averaged over 8 flips and turns (8x the time); fast: one pass; "
            f"auto: best for layers up to {TTA_AUTO_PIXELS / 1e6:.1f} Mpx, fast above")
        form.addRow("output", self.output)
        form.addRow("tile size", self.tile)
        form.addRow("quality", self.tta)

        self.denoise_button = QPushButton("Denoise")
        self.stop_button = QPushButton("Stop")
        self.undo_button = QPushButton("Undo in-place")
        self.stop_button.setEnabled(False)
        self.undo_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("ready")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (self.denoise_button, self.stop_button, self.undo_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.store.changed.connect(self._model_changed)
        self.layer_picker.currentTextChanged.connect(self._layer_changed)
        self.load_button.clicked.connect(self._load_dialog)
        self.denoise_button.clicked.connect(self.start_denoising)
        self.stop_button.clicked.connect(self._stop.set)
        self.undo_button.clicked.connect(self.undo)
        self.relay.progress.connect(self._on_progress)
        self._model_changed(self.store.model)
        self._layer_changed(self.layer_picker.currentText())

    # ---- model -----------------------------------------------------------------------
    def _model_changed(self, model: Any) -> None:
        from ..core.prior import prior_available

        if model is None and prior_available():
            self.model_label.setText(PRIOR_TEXT)
            self.model_label.setToolTip(PRIOR_TEXT)
            for name in self.params:
                self.params[name].setVisible(name == "sigma")
                self._param_labels[name].setVisible(name == "sigma")
            self.params["sigma"].setEnabled(True)
            self.params["sigma"].setValue(0.0)
            self.denoise_button.setEnabled(self.worker is None)
            return
        if model is None:
            self.model_label.setText("none yet: train one, or load a model file")
            for name in self.params:
                self.params[name].setVisible(False)
                self._param_labels[name].setVisible(False)
            self.denoise_button.setEnabled(False)
            return
        cfg = model.config
        needs = model.noise_params().needs
        for name, box in self.params.items():
            box.setVisible(name in needs)
            self._param_labels[name].setVisible(name in needs)
            if getattr(cfg, name) is not None:
                box.setValue(getattr(cfg, name))
        self.tta.setCurrentText({v: k for k, v in QUALITY.items()}[cfg.tta])
        # a Poisson-type model's gain (and, after the Anscombe transform, its read noise)
        # is fixed by its training domain
        self.params["gain"].setEnabled(not cfg.poisson_type)
        self.params["sigma"].setEnabled(not cfg.anscombe)
        text = f"{cfg.noise} model, {self.store.source} ({model.steps} steps)"
        self.model_label.setText(text)
        self.model_label.setToolTip(text)
        self.denoise_button.setEnabled(self.worker is None)

    def _overrides(self, model: Any) -> dict[str, float]:
        """The noise parameters the user changed from the model's own values. A field shows
        a value rounded to its decimals: an unchanged field means the model's exact value
        (a Poisson-type model's gain, for one, must match its training value exactly)."""
        cfg, changed = model.config, {}
        for name in model.noise_params().needs:
            box, trained = self.params[name], getattr(cfg, name)
            if not box.isEnabled():
                continue
            if trained is None or abs(box.value() - trained) > 0.5 * 10.0 ** -box.decimals():
                changed[name] = box.value()
        return changed

    def _layer_changed(self, name: str) -> None:
        if name and name in self.viewer.layers:
            try:
                self.axes.setText(infer_axes(self.viewer.layers[name].ndim))
            except Noise2ScoreError:
                self.axes.setText("")

    def load_model(self, path: str | Path) -> None:
        try:
            self.store.load(path)
        except Noise2ScoreError as exc:
            self._error(exc)

    def _load_dialog(self) -> None:
        path = ask_model_path(self)
        if path:
            self.load_model(path)

    # ---- denoising -------------------------------------------------------------------
    def start_denoising(self) -> None:
        """Read the layer and parameters on the GUI thread; denoise in a worker thread."""
        from napari.qt.threading import create_worker

        from ..core.inference import denoise_array

        if self.worker is not None:
            return
        model = self.store.model
        try:
            if model is None:
                model = self._instant_model()
            model = _with_tta(model, QUALITY[self.tta.currentText()])
            layer = self.layer_picker.layer()
            axes = self.axes.text().strip().upper() or None
            if is_unbound(model):
                model = self._bind_prior(model, layer, axes)
            if model.conditioned:  # a noise-conditioned model is told the sigma given
                model = rebind(model, self._overrides(model).get("sigma"))
            if is_lazy(layer):
                self._add_lazy(layer, model)
                return
            data = layer_array(layer)
            noise = model.noise_params(**self._overrides(model))
        except Noise2ScoreError as exc:
            self._error(exc)
            return
        self._stop.clear()
        target, mode = layer.name, self.output.currentText()
        tile = self.tile.value()
        self.status.setText(f"denoising {target}…")
        self.progress.setValue(0)

        def work() -> np.ndarray:
            return denoise_array(model, data, axes, noise, tile, None,
                                 progress=self.relay.progress.emit, stop=self._stop.is_set)

        self.worker = create_worker(work, _start_thread=False, _ignore_errors=True)
        self.worker.returned.connect(lambda result: self._deliver(result, target, mode))
        self.worker.errored.connect(self._error)
        self.worker.finished.connect(self._on_finished)
        self._set_running(True)
        self.worker.start()

    def _instant_model(self) -> Any:
        """The pretrained prior when nothing has been trained or loaded ("instant")."""
        from ..core.prior import prior_available, unbound_model

        if not prior_available():
            raise Noise2ScoreError("there is no model: train one or load a model file")
        return unbound_model()

    def _bind_prior(self, model: Any, layer: Any, axes: str | None) -> Any:
        """The prior bound to the layer's noise: the sigma box if set, else estimated."""
        from ..core.prior import bind
        from ..core.stack import check_axes
        from ..io.lazy import training_planes

        data = layer.data if is_lazy(layer) else layer_array(layer)
        planes = training_planes(data, check_axes(axes, data.ndim), max_bytes=64 * 2**20)
        sigma = self.params["sigma"].value() or None
        model, line = bind(model, list(planes), sigma)
        self.params["sigma"].setValue(model.config.sigma)
        self.status.setText(line)
        return model

    def _add_lazy(self, layer: Any, model: Any) -> None:
        """A lazy (dask) layer gives a lazy result, computed where the viewer shows it."""
        from .._writer import denoised_layer

        if self.output.currentText() == IN_PLACE:
            raise Noise2ScoreError(
                f"{layer.name!r} is a lazy (out-of-memory) layer: it cannot be changed in "
                "place; choose 'new layer'")
        data, meta, _ = denoised_layer(layer.data, model,
                                       axes=self.axes.text().strip().upper() or None,
                                       name=f"{layer.name} denoised", tile=self.tile.value())
        self.viewer.add_image(data, scale=layer.scale, translate=layer.translate, **meta)
        self.status.setText(
            f"added {meta['name']} (lazy: computed where viewed; File > Save Selected "
            "Layers with the Noise2Score writer computes and saves all of it)")

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.status.setText(f"denoising: plane {done} of {total}")

    def _deliver(self, result: np.ndarray, target: str, mode: str) -> None:
        if target not in self.viewer.layers:
            self._error(Noise2ScoreError(f"layer {target!r} was removed while denoising"))
            return
        layer = self.viewer.layers[target]
        if mode == IN_PLACE:
            self._undo.append((target, layer.data))  # the old array itself: exact undo
            layer.data = result
            layer.reset_contrast_limits()
            self.undo_button.setEnabled(True)
            self.status.setText(f"denoised {target} in place (Undo restores it)")
        else:
            self.viewer.add_image(result, name=f"{target} denoised", scale=layer.scale,
                                  translate=layer.translate, colormap=layer.colormap.name,
                                  blending=layer.blending)
            self.status.setText(f"added {target} denoised")

    def undo(self) -> None:
        """Restore the layer that was last denoised in place."""
        while self._undo:
            name, data = self._undo.pop()
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                layer.data = data
                layer.reset_contrast_limits()
                self.status.setText(f"restored {name}")
                break
        self.undo_button.setEnabled(bool(self._undo))

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        """A closed widget stops its worker (as the Train widget does): no result is added
        to the viewer after it is gone."""
        self._stop.set()
        super().closeEvent(event)

    def _set_running(self, running: bool) -> None:
        from ..core.prior import prior_available

        usable = self.store.model is not None or prior_available()
        self.denoise_button.setEnabled(not running and usable)
        self.stop_button.setEnabled(running)

    def _error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error, show_info

        if isinstance(exc, Cancelled):
            self.status.setText("stopped; the layer is unchanged")
            show_info("Noise2Score: denoising stopped")
            return
        self.last_error = str(exc)
        self.status.setText(f"error: {exc}")
        show_error(f"Noise2Score: {exc}")


def _with_tta(model: Any, tta: bool | None) -> Any:
    """The model denoising with the quality field's setting (None: auto, by size)."""
    return replace(model, config=replace(model.config, tta=tta))
