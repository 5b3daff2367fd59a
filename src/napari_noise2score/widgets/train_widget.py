"""The Train dock widget: pick a layer and a noise model, train in a background thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
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
from superqt import QCollapsible

from ..core.config import AUTO, TRANSFORMS, TrainConfig
from ..core.errors import Noise2ScoreError
from ..core.noise import MIXED_MODES, NOISE_MODELS, NOISE_TYPES
from ..core.stack import infer_axes
from ._common import (
    LayerPicker,
    LossPlot,
    ask_model_path,
    format_seconds,
    layer_array,
    preload_engine,
)
from ._session import store_for

#: Choices of the "correlated noise" field and the TrainConfig.decorrelate they give.
DECORRELATE = {"auto": None, "independent pixels": 1, "2x2 sub-images": 2}
PARAM_HELP = {
    "sigma": "noise std in the layer's intensity units (read noise for poisson-gaussian)",
    "gain": "Poisson gain zeta: the intensity of one photon count",
    "shape": "Gamma shape k (> 1)",
    "offset": "camera offset (dark level), subtracted before denoising",
}
NEEDS = {"auto": set(), **{name: {*kind.needs, *(("offset",) if kind.counts else ())}
                           for name, kind in NOISE_TYPES.items()}}


def _spin(value: float, lo: float, hi: float, decimals: int = 4) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(lo, hi)
    box.setValue(value)
    return box


def _int_spin(value: int, lo: int, hi: int, special: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    if special:
        box.setSpecialValueText(special)
    return box


class TrainWidget(QWidget):
    """Train a Noise2Score model on an image layer; the model goes to the Denoise widget."""

    UI_INTERVAL = 0.1  # seconds between progress redraws

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.store = store_for(napari_viewer)
        self.worker: Any = None
        self._stop = threading.Event()
        self._last_draw = 0.0
        self.last_error = ""
        self.destroyed.connect(self._stop.set)
        preload_engine()

        self.layer_picker = LayerPicker(napari_viewer)
        self.axes = QLineEdit()
        self.axes.setToolTip("axes of the layer, e.g. YX, TYX, ZYX; Y and X are the image plane")
        self.noise = QComboBox()
        self.noise.addItems([AUTO, *NOISE_MODELS])
        self.noise.setCurrentText(AUTO)
        self.noise.setToolTip("'auto' estimates the noise model and its parameters")
        self.params = {
            "sigma": _spin(10.0, 0.0, 1e9),
            "gain": _spin(1.0, 0.0, 1e9),
            "shape": _spin(50.0, 0.0, 1e9, decimals=2),
            "offset": _spin(0.0, -1e9, 1e9, decimals=3),
        }
        self.estimate_button = QPushButton("Estimate")
        self.estimate_button.setToolTip("estimate the noise model and parameters from the layer")
        self.max_seconds = _spin(120.0, 1.0, 1e6, decimals=0)
        self.max_seconds.setSuffix(" s")
        self.max_steps = _int_spin(0, 0, 10_000_000, special="by time")

        form = QFormLayout()
        form.addRow("image layer", self.layer_picker)
        form.addRow("axes", self.axes)
        noise_row = QHBoxLayout()
        noise_row.addWidget(self.noise, 1)
        noise_row.addWidget(self.estimate_button)
        form.addRow("noise model", noise_row)
        self._param_labels = {}
        for name, box in self.params.items():
            box.setToolTip(PARAM_HELP[name])
            label = QLabel(name)
            self._param_labels[name] = label
            form.addRow(label, box)
        form.addRow("time budget", self.max_seconds)
        form.addRow("steps", self.max_steps)

        self.patch_size = _int_spin(64, 16, 1024)
        self.batch_size = _int_spin(16, 1, 1024)
        self.learning_rate = _spin(1e-3, 1e-6, 1.0, decimals=6)
        self.width = _int_spin(0, 0, 128, special="auto")
        self.seed = _int_spin(0, 0, 2**31 - 1)
        self.decorrelate = QComboBox()
        self.decorrelate.addItems(list(DECORRELATE))
        self.decorrelate.setToolTip(
            "noise correlated between neighbouring pixels: learn and denoise on 2x2 "
            "sub-images (auto: decided from the measured correlation)")
        self.mixed_mode = QComboBox()
        self.mixed_mode.addItems(list(MIXED_MODES))
        self.mixed_mode.setCurrentText(TrainConfig().mixed_mode)
        self.mixed_mode.setToolTip("Tweedie form for poisson-gaussian noise")
        self.transform = QComboBox()
        self.transform.addItems(["auto", *TRANSFORMS])
        self.transform.setToolTip(
            "where Poisson-type noise is learned: 'anscombe' after the generalized Anscombe "
            "transform, 'none' in photon counts (auto: chosen from the data)")
        self.device = QComboBox()
        self.device.addItems(self._device_names())
        advanced = QFormLayout()
        advanced.addRow("patch size", self.patch_size)
        advanced.addRow("batch size", self.batch_size)
        advanced.addRow("learning rate", self.learning_rate)
        advanced.addRow("network width", self.width)
        advanced.addRow("seed", self.seed)
        advanced.addRow("correlated noise", self.decorrelate)
        advanced.addRow("mixed-noise step", self.mixed_mode)
        advanced.addRow("transform", self.transform)
        advanced.addRow("device", self.device)
        box = QWidget()
        box.setLayout(advanced)
        self.advanced = QCollapsible("Advanced settings")
        self.advanced.addWidget(box)

        self.train_button = QPushButton("Train")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.save_button = QPushButton("Save model…")
        self.load_button = QPushButton("Load model…")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("write the model as a bioimage.io package (.zip), to run "
                                      "in deepImageJ, ilastik or bioimageio.core")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.status = QLabel("ready")
        self.status.setWordWrap(True)
        self.loss_plot = LossPlot()

        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.stop_button)
        files = QHBoxLayout()
        files.addWidget(self.save_button)
        files.addWidget(self.load_button)
        files.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.loss_plot)
        layout.addLayout(files)
        layout.addStretch(1)

        self.noise.currentTextChanged.connect(self._show_params)
        self.estimate_button.clicked.connect(self.estimate)
        self.layer_picker.currentTextChanged.connect(self._layer_changed)
        self.train_button.clicked.connect(self.start_training)
        self.stop_button.clicked.connect(self.stop_training)
        self.save_button.clicked.connect(self._save_dialog)
        self.load_button.clicked.connect(self._load_dialog)
        self.export_button.clicked.connect(self._export_dialog)
        self._show_params(self.noise.currentText())
        self._layer_changed(self.layer_picker.currentText())

    # ---- configuration ---------------------------------------------------------------
    @staticmethod
    def _device_names() -> list[str]:
        from ..core.device import available_devices

        return ["auto"] + available_devices()

    def _show_params(self, noise: str) -> None:
        needs = NEEDS[noise]
        for name, box in self.params.items():
            box.setVisible(name in needs)
            self._param_labels[name].setVisible(name in needs)

    def _layer_changed(self, name: str) -> None:
        if name and name in self.viewer.layers:
            layer = self.viewer.layers[name]
            try:
                self.axes.setText(infer_axes(layer.ndim))
            except Noise2ScoreError:
                self.axes.setText("")

    def config(self) -> TrainConfig:
        """The TrainConfig these fields describe (validated)."""
        noise = self.noise.currentText()
        values = {name: (box.value() if name in NEEDS[noise] else None)
                  for name, box in self.params.items()}
        return TrainConfig(
            noise=noise,
            sigma=values["sigma"],
            gain=values["gain"],
            shape=values["shape"],
            offset=values["offset"] or 0.0,
            axes=self.axes.text().strip().upper() or None,
            max_seconds=self.max_seconds.value(),
            max_steps=self.max_steps.value() or None,
            patch_size=self.patch_size.value(),
            batch_size=self.batch_size.value(),
            learning_rate=self.learning_rate.value(),
            width=self.width.value() or None,
            seed=self.seed.value(),
            decorrelate=DECORRELATE[self.decorrelate.currentText()],
            mixed_mode=self.mixed_mode.currentText(),
            transform=None if self.transform.currentText() == "auto"
            else self.transform.currentText(),
            device=self.device.currentText(),
        ).validate()

    def set_config(self, config: TrainConfig) -> None:
        """Show ``config`` in the fields (e.g. that of a loaded model)."""
        self.noise.setCurrentText(config.noise)
        self.params["offset"].setValue(config.offset)
        for name in self.params:
            value = getattr(config, name)
            if value is not None:
                self.params[name].setValue(value)
        self.patch_size.setValue(config.patch_size)
        self.batch_size.setValue(config.batch_size)
        self.learning_rate.setValue(config.learning_rate)
        self.seed.setValue(config.seed)
        stride = {v: k for k, v in DECORRELATE.items()}.get(config.decorrelate, "auto")
        self.decorrelate.setCurrentText(stride)
        self.mixed_mode.setCurrentText(config.mixed_mode)
        self.transform.setCurrentText(config.transform or "auto")

    def estimate(self) -> None:
        """Estimate the noise of the chosen layer and show it in the fields."""
        from ..api import estimate_noise

        try:
            layer = self.layer_picker.layer()
            estimate = estimate_noise(layer_array(layer),
                                      axes=self.axes.text().strip().upper() or None)
        except Noise2ScoreError as exc:
            self._error(exc)
            return
        self.show_estimate(estimate)

    def show_estimate(self, estimate: Any, route: str = "") -> None:
        """Put an estimate in the fields and say what it is (and the route chosen for it),
        before it is used."""
        self.noise.setCurrentText(estimate.model)
        for name in self.params:
            value = getattr(estimate, name)
            if value is not None:
                self.params[name].setValue(value)
        text = f"estimated {estimate.describe()}"
        self.status.setText(f"{text}; {route}" if route else text)

    # ---- training --------------------------------------------------------------------
    def start_training(self) -> None:
        """Read the layer and fields on the GUI thread, then train in a worker thread."""
        from napari.qt.threading import create_worker

        from ..core.training import iter_training

        if self.worker is not None:
            return
        try:
            layer = self.layer_picker.layer()
            data = layer_array(layer)
            config = self.config()
        except Noise2ScoreError as exc:
            self._error(exc)
            return
        self._stop.clear()
        self.loss_plot.clear()
        self.progress.setValue(0)
        self._training_layer = layer.name
        self.status.setText(f"training on {layer.name}…")
        self.worker = create_worker(iter_training, data, config, stop=self._stop.is_set,
                                    _start_thread=False, _ignore_errors=True)
        self.worker.yielded.connect(self._on_update)
        self.worker.errored.connect(self._error)
        self.worker.finished.connect(self._on_finished)
        self._set_running(True)
        self.worker.start()

    def stop_training(self) -> None:
        """Ask the worker to stop; it ends within one step and keeps the model so far."""
        self._stop.set()
        self.status.setText("stopping…")

    def _on_update(self, update: Any) -> None:
        from ..core.training import NoiseEstimated, TrainDone, TrainNote

        if isinstance(update, NoiseEstimated):
            self.show_estimate(update.estimate, update.route)
            return
        if isinstance(update, TrainNote):
            self.status.setText(update.text)
            return
        if isinstance(update, TrainDone):
            model = update.model
            self.store.set(model, f"trained on {self._training_layer}")
            how = "stopped" if update.stopped else "done"
            self.progress.setValue(1000)
            self.status.setText(f"{how}: {model.steps} steps in {format_seconds(model.seconds)}; "
                                "the model is ready in the Denoise widget")
            return
        self.loss_plot.add(update.loss, redraw=False)
        now = time.monotonic()
        if now - self._last_draw < self.UI_INTERVAL:
            return
        self._last_draw = now
        self.loss_plot.update()
        self.progress.setValue(int(update.fraction * 1000))
        self.status.setText(f"step {update.step}, loss {update.loss:.4f}, "
                            f"sigma_a {update.sigma_a:.3g}, ETA {format_seconds(update.eta)}")

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)
        _free_accelerator_memory()

    def _set_running(self, running: bool) -> None:
        self.train_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.load_button.setEnabled(not running)
        self.export_button.setEnabled(not running)
        self.estimate_button.setEnabled(not running)

    def _error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        self.last_error = str(exc)
        self.status.setText(f"error: {exc}")
        show_error(f"Noise2Score: {exc}")

    # ---- model files -----------------------------------------------------------------
    def save_model(self, path: str | Path) -> None:
        if self.store.model is None:
            self._error(Noise2ScoreError("there is no model yet: train or load one first"))
            return
        try:
            self.store.model.save(path)
        except Noise2ScoreError as exc:  # a read-only folder, a full disk
            self._error(exc)
            return
        self.status.setText(f"saved {path}")

    def load_model(self, path: str | Path) -> None:
        try:
            model = self.store.load(path)
        except Noise2ScoreError as exc:
            self._error(exc)
            return
        self.set_config(model.config)
        self.status.setText(f"loaded {path}")

    def export_model(self, path: str | Path) -> None:
        """Write the model as a bioimage.io package, its test pair from the training layer."""
        from ..export.widget import export_from_viewer

        if self.store.model is None:
            self._error(Noise2ScoreError("there is no model yet: train or load one first"))
            return
        try:
            export_from_viewer(self.viewer, self.store.model, path,
                               getattr(self, "_training_layer", None))
        except Noise2ScoreError as exc:
            self._error(exc)
            return
        self.status.setText(f"exported {path}")

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export to bioimage.io", "model.zip",
                                              "bioimage.io package (*.zip)")
        if path:
            self.export_model(path)

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save model", "model.n2s",
                                              "Noise2Score model (*.n2s)")
        if path:
            self.save_model(path)

    def _load_dialog(self) -> None:
        path = ask_model_path(self)
        if path:
            self.load_model(path)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        self._stop.set()
        super().closeEvent(event)


def _free_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
