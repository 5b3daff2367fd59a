"""The Train dock widget: pick a layer and a noise model, train in a background thread.

Its fields are made from ``TrainConfig``: one magicgui widget per dataclass field, with the
field's default and, for sized fields, the range in ``LIMITS``. The fields it deliberately
does not show are listed in ``NOT_SHOWN``, built on ``config.NOT_EXPOSED`` (the fields no
front end sets; tests/widgets/test_widgets.py fails when the two drift apart from
``TrainConfig``)."""

from __future__ import annotations

import time
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Container, FloatSpinBox, LineEdit, SpinBox
from superqt import QCollapsible

from ..core.config import AUTO, INITS, LIMITS, NOT_EXPOSED, TRANSFORMS, TrainConfig
from ..core.errors import Noise2ScoreError
from ..core.noise import MIXED_MODES, NOISE_MODELS, NOISE_TYPES
from ._common import (
    DockPanel,
    LossPlot,
    ask_path,
    buttons,
    format_seconds,
    layer_array,
    preload_engine,
)

#: TrainConfig fields the widget does not show, and why; they keep TrainConfig's default:
#: those no front end exposes (``config.NOT_EXPOSED``), and some the command line offers.
NOT_SHOWN = {
    **NOT_EXPOSED,
    "tta": "a denoising option: the Denoise widget's quality box",
    "depth": "sized for the device (TrainConfig.resolved)",
}
#: Fields folded under "Advanced settings"; the other shown fields are in the main form.
ADVANCED = ("patch_size", "batch_size", "learning_rate", "width", "seed", "decorrelate",
            "mixed_mode", "transform", "init", "device")
NOISE_FIELDS = ("sigma", "gain", "shape", "offset")
LABELS = {"noise": "noise model", "max_seconds": "time budget", "max_steps": "steps",
          "patch_size": "patch size", "batch_size": "batch size",
          "learning_rate": "learning rate", "width": "network width",
          "decorrelate": "correlated noise", "mixed_mode": "mixed-noise step",
          "init": "start from"}
HELP = {
    "noise": "'auto' estimates the noise model and its parameters",
    "sigma": "noise std in the layer's intensity units (read noise for poisson-gaussian)",
    "gain": "Poisson gain zeta: the intensity of one photon count",
    "shape": "Gamma shape k (> 1)",
    "offset": "camera offset (dark level), subtracted before denoising",
    "max_seconds": "training stops when this time is spent",
    "max_steps": "a number of steps (by time: the time budget decides)",
    "width": "channels of the network (auto: chosen for the device)",
    "decorrelate": "noise correlated between neighbouring pixels: learn and denoise on 2x2 "
                   "sub-images (auto: decided from the measured correlation)",
    "mixed_mode": "Tweedie form for poisson-gaussian noise",
    "transform": "where Poisson-type noise is learned: 'anscombe' after the generalized "
                 "Anscombe transform, 'none' in photon counts (auto: chosen from the data)",
    "init": "pretrained: fine-tune the shipped prior; scratch: a new network; auto: the "
            "prior when the noise is in its range",
}
#: Ranges of number fields that LIMITS does not size (LIMITS gives the others).
RANGES = {"sigma": (0.0, 1e9), "gain": (0.0, 1e9), "shape": (0.0, 1e9),
          "offset": (-1e9, 1e9), "max_seconds": (1.0, 1e6), "max_steps": (0, 10_000_000),
          "learning_rate": (1e-6, 1.0), "seed": (0, 2**31 - 1)}
DECIMALS = {"sigma": 4, "gain": 4, "shape": 2, "offset": 3, "max_seconds": 0,
            "learning_rate": 6, "max_steps": 0, "width": 0}
#: Number fields where 0 stands for None (automatic), and what the box then shows.
ZERO_IS_AUTO = {"max_steps": "by time", "width": "auto"}
STRIDES = {1: "independent pixels", 2: "2x2 sub-images"}


def _choices(name: str) -> list[Any] | None:
    """The choices of a choice field (None: not one): label and TrainConfig value."""
    if name == "decorrelate":
        lo, hi = LIMITS["decorrelate"]
        return [("auto", None), *((STRIDES[s], s) for s in range(lo, hi + 1))]
    if name == "device":
        from ..core.device import available_devices

        return [AUTO, *available_devices()]
    return {"noise": [AUTO, *NOISE_MODELS], "mixed_mode": list(MIXED_MODES),
            "transform": [("auto", None), *((t, t) for t in TRANSFORMS)],
            "init": list(INITS)}.get(name)


def field_widget(name: str, kind: type, default: Any) -> Any:
    """The magicgui widget of one TrainConfig field, showing its default."""
    options = {"name": name, "label": LABELS.get(name, name.replace("_", " ")),
               "tooltip": HELP.get(name)}
    if (choices := _choices(name)) is not None:
        return ComboBox(choices=choices, value=default, **options)
    if kind is str:
        return LineEdit(value=default or "", **options)
    lo, hi = LIMITS.get(name) or RANGES[name]
    if name in ZERO_IS_AUTO:  # a float box: magicgui's int box cannot show a word for 0
        lo, kind = 0, float
    box = (SpinBox if kind is int else FloatSpinBox)(min=lo, max=hi, **options)
    if name in DECIMALS:
        box.native.setDecimals(DECIMALS[name])
    box.value = 0 if default is None else default
    if name in ZERO_IS_AUTO:
        box.native.setSpecialValueText(ZERO_IS_AUTO[name])
    return box


def shown_fields() -> dict[str, tuple[type, Any]]:
    """The TrainConfig fields the widget shows: name -> (value type, default)."""
    hints = typing.get_type_hints(TrainConfig)
    shown = {}
    for f in fields(TrainConfig):
        if f.name in NOT_SHOWN:
            continue
        kinds = [t for t in typing.get_args(hints[f.name]) or (hints[f.name],)
                 if t is not type(None)]
        shown[f.name] = (kinds[0], None if f.default is MISSING else f.default)
    return shown


def noise_fields(noise: str) -> set[str]:
    """The noise parameters a noise model needs ('auto': none, they are estimated)."""
    kind = NOISE_TYPES.get(noise)  # None for 'auto'
    if kind is None:
        return set()
    return {*kind.needs, *(("offset",) if kind.counts else ())}


class TrainWidget(DockPanel):
    """Train a Noise2Score model on an image layer; the model goes to the Denoise widget."""

    UI_INTERVAL = 0.1  # seconds between progress redraws

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self._last_draw = 0.0
        self._training_layer: str | None = None
        preload_engine()
        #: one widget per shown TrainConfig field, by field name
        self.fields = {name: self.axes if name == "axes" else field_widget(name, kind, default)
                       for name, (kind, default) in shown_fields().items()}
        row, (self.estimate_button,) = buttons("Estimate")
        self.estimate_button.tooltip = "estimate the noise model and parameters from the layer"
        noise_row = Container(layout="horizontal", labels=False, label="noise model",
                              widgets=[self.fields["noise"], self.estimate_button])
        main = [self.layer, self.axes, noise_row] + [
            w for name, w in self.fields.items() if name not in (*ADVANCED, "noise", "axes")]
        run_row, (self.train_button, self.stop_button) = buttons("Train", "Stop")
        file_row, (self.save_button, self.load_button, self.export_button) = buttons(
            "Save model…", "Load model…", "Export…")
        self.export_button.tooltip = ("write the model as a bioimage.io package (.zip), to "
                                      "run in deepImageJ, ilastik or bioimageio.core")
        self.stop_button.enabled = False
        self.extend([Container(widgets=main), run_row, self.progress, self._status, file_row])
        advanced = Container(widgets=[self.fields[name] for name in ADVANCED])
        self.advanced = QCollapsible("Advanced settings")
        self.advanced.addWidget(advanced.native)
        self.loss_plot = LossPlot()
        layout = self.native.layout()
        layout.insertWidget(1, self.advanced)
        layout.insertWidget(5, self.loss_plot)

        self.fields["noise"].changed.connect(self._show_params)
        self.estimate_button.changed.connect(self.estimate)
        self.train_button.changed.connect(self.start_training)
        self.stop_button.changed.connect(self.stop_training)
        self.save_button.changed.connect(self._save_dialog)
        self.load_button.changed.connect(self._load_dialog)
        self.export_button.changed.connect(self._export_dialog)
        self._show_params(self.fields["noise"].value)
        self.reset_choices()

    # ---- configuration ---------------------------------------------------------------
    def _show_params(self, noise: str) -> None:
        needs = noise_fields(noise)
        for name in NOISE_FIELDS:
            self.fields[name].visible = name in needs

    def config(self) -> TrainConfig:
        """The TrainConfig these fields describe (validated)."""
        values = {name: w.value for name, w in self.fields.items()}
        needs, defaults = noise_fields(values["noise"]), TrainConfig()
        for name in NOISE_FIELDS:
            if name not in needs:
                values[name] = getattr(defaults, name)
        for name in ZERO_IS_AUTO:
            values[name] = int(values[name]) or None
        values["axes"] = self.axes_text()
        return TrainConfig(**values)

    def set_config(self, config: TrainConfig) -> None:
        """Show ``config`` in the fields (e.g. that of a loaded model)."""
        for name, widget in self.fields.items():
            value = getattr(config, name)
            if name in ZERO_IS_AUTO and value is None:
                value = 0
            if name == "axes":
                value = value or ""
            if value is None and name in NOISE_FIELDS:
                continue
            if isinstance(widget, ComboBox) and value not in widget.choices:
                continue  # e.g. a device this machine lacks, a model file to start from
            widget.value = value

    def estimate(self) -> None:
        """Estimate the noise of the chosen layer and show it in the fields."""
        from ..api import estimate_noise

        try:
            estimate = estimate_noise(layer_array(self.chosen_layer()), axes=self.axes_text())
        except Noise2ScoreError as exc:
            self._error(exc)
            return
        self.show_estimate(estimate)

    def show_estimate(self, estimate: Any, route: str = "") -> None:
        """Put an estimate in the fields and say what it is (and the route chosen for it),
        before it is used."""
        self.fields["noise"].value = estimate.model
        for name in NOISE_FIELDS:
            value = getattr(estimate, name)
            if value is not None:
                self.fields[name].value = value
        text = f"estimated {estimate.describe()}"
        self.say(f"{text}; {route}" if route else text)

    # ---- training --------------------------------------------------------------------
    def start_training(self) -> None:
        """Read the layer and fields on the GUI thread, then train in a worker thread
        (napari's thread_worker: its yielded updates arrive on the GUI thread)."""
        from napari.qt.threading import create_worker
        from napari.utils import progress

        from ..core.training import iter_training

        if self.worker is not None:
            return
        try:
            layer = self.chosen_layer()
            data = layer_array(layer)
            config = self.config()
        except Noise2ScoreError as exc:
            self._error(exc)
            return
        self._stop.clear()
        self.loss_plot.clear()
        self.progress.value = 0
        self._training_layer = layer.name
        self.say(f"training on {layer.name}…")
        self._activity = progress(total=1000, desc=f"Noise2Score: training on {layer.name}")
        worker = create_worker(iter_training, data, config, stop=self._stop.is_set,
                               _start_thread=False, _ignore_errors=True)
        worker.finished.connect(self._activity.close)  # as napari does for its own bars
        self._start(worker, yielded=self._on_update)

    def stop_training(self) -> None:
        """Ask the worker to stop; it ends within one step and keeps the model so far."""
        self.stop()
        self.say("stopping…")

    def _set_fraction(self, fraction: float) -> None:
        done = int(fraction * 1000)
        self.progress.value = done
        if self._activity is not None:
            self._activity.update(max(0, done - self._activity.n))

    def _on_update(self, update: Any) -> None:
        from ..core.training import NoiseEstimated, TrainDone, TrainNote

        if isinstance(update, NoiseEstimated):
            self.show_estimate(update.estimate, update.route)
        elif isinstance(update, TrainNote):
            self.say(update.text)
        elif isinstance(update, TrainDone):
            model = update.model
            self.store.set(model, f"trained on {self._training_layer}")
            self._set_fraction(1.0)
            how = "stopped" if update.stopped else "done"
            self.say(f"{how}: {model.steps} steps in {format_seconds(model.seconds)}; "
                     "the model is ready in the Denoise widget")
        else:
            self.loss_plot.add(update.loss, redraw=False)
            now = time.monotonic()
            if now - self._last_draw < self.UI_INTERVAL:
                return
            self._last_draw = now
            self.loss_plot.update()
            self._set_fraction(update.fraction)
            self.say(f"step {update.step}, loss {update.loss:.4f}, sigma_a "
                     f"{update.sigma_a:.3g}, ETA {format_seconds(update.eta)}")

    def _on_finished(self) -> None:
        import torch

        self.worker = self._activity = None
        self._set_running(False)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the accelerator's memory back to other programs

    def _set_running(self, running: bool) -> None:
        for button in (self.train_button, self.load_button, self.export_button,
                       self.estimate_button):
            button.enabled = not running
        self.stop_button.enabled = running

    # ---- model files -----------------------------------------------------------------
    def _has_model(self) -> bool:
        if self.store.model is None:
            self._error(Noise2ScoreError("there is no model yet: train or load one first"))
        return self.store.model is not None

    def save_model(self, path: str | Path) -> None:
        # a read-only folder or a full disk is shown as an error
        if self._has_model() and self._attempt(self.store.model.save, path):
            self.say(f"saved {path}")

    def load_model(self, path: str | Path) -> None:
        if self._attempt(self.store.load, path):
            self.set_config(self.store.model.config)
            self.say(f"loaded {path}")

    def export_model(self, path: str | Path) -> None:
        """Write the model as a bioimage.io package, its test pair from the training layer."""
        from ..export.widget import export_from_viewer

        if self._has_model() and self._attempt(export_from_viewer, self.viewer,
                                               self.store.model, path, self._training_layer):
            self.say(f"exported {path}")

    def _export_dialog(self) -> None:
        if path := ask_path("w", "Export to bioimage.io", "model.zip",
                            "bioimage.io package (*.zip)"):
            self.export_model(path)

    def _save_dialog(self) -> None:
        if path := ask_path("w", "Save model", "model.n2s", "Noise2Score model (*.n2s)"):
            self.save_model(path)

