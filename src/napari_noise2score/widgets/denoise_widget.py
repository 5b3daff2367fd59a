"""The Denoise dock widget: apply the current model to a layer, as a new layer or in place."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, SpinBox

from ..core.errors import Cancelled, Noise2ScoreError
from ..core.inference import DEFAULT_TILE, TTA_AUTO_PIXELS
from ..core.prior import is_unbound, rebind
from ._common import DockPanel, buttons, is_lazy, layer_array, preload_engine, wrapping

NEW_LAYER, IN_PLACE = "new layer", "in place (undoable)"
#: Choices of the "quality" field and the model's tta and wiener settings they give (None:
#: by size; the Wiener step only where the noise allows it, ``inference.wiener_applies``).
QUALITY = {"auto": None, "best (8-fold average, Wiener step)": True,
           "fast (one pass)": False}
DECIMALS = {"sigma": 4, "gain": 4, "shape": 2}
PRIOR_TEXT = ("none trained: the pretrained prior, instant (Gaussian noise; sigma 0 = "
              "estimate it from the layer); train for a better one")
NO_MODEL_TEXT = "none yet: train one, or load a model file"


class DenoiseWidget(DockPanel):
    """Denoise an image layer with the model trained (or loaded) in this viewer."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self._undo: list[tuple[str, Any]] = []
        preload_engine()
        self._model_label = Label(name="model", label="model")
        self.model_label = wrapping(self._model_label)  # a QLabel; the text also as tooltip
        load_row, (self.load_button,) = buttons("Load model…")
        self.params = {name: FloatSpinBox(name=name, min=0.0, max=1e9) for name in DECIMALS}
        for name, decimals in DECIMALS.items():
            self.params[name].native.setDecimals(decimals)
        self.output = ComboBox(name="output", choices=[NEW_LAYER, IN_PLACE])
        self.tile = SpinBox(name="tile", label="tile (px)", min=16, max=16384,
                            value=DEFAULT_TILE, tooltip="tile size: smaller tiles use less "
                            "memory")
        self.quality = ComboBox(name="quality", choices=list(QUALITY), tooltip=(
            "best: the score averaged over 8 flips and turns (8x the time); fast: one pass; "
            f"auto: best for layers up to {TTA_AUTO_PIXELS / 1e6:.1f} Mpx, fast above; "
            "the default is the model's own setting"))
        run_row, (self.denoise_button, self.stop_button, self.undo_button) = buttons(
            "Denoise", "Stop", "Undo in-place")
        self.stop_button.enabled = self.undo_button.enabled = False
        form = Container(widgets=[self._model_label, load_row, self.layer, self.axes,
                                  *self.params.values(), self.output, self.tile,
                                  self.quality])
        self.extend([form, run_row, self.progress, self._status])

        self.store.changed.connect(self._model_changed)
        self.load_button.changed.connect(self._load_dialog)
        self.denoise_button.changed.connect(self.start_denoising)
        self.stop_button.changed.connect(self.stop)
        self.undo_button.changed.connect(self.undo)
        self._model_changed(self.store.model)
        self.reset_choices()

    # ---- model -----------------------------------------------------------------------
    def _show_model(self, text: str, shown: tuple[str, ...]) -> None:
        self._model_label.value = text
        self._model_label.tooltip = text
        for name, box in self.params.items():
            box.visible = name in shown

    def _model_changed(self, model: Any) -> None:
        from ..core.prior import prior_available

        self.quality.value = "auto"
        if model is None and prior_available():
            self._show_model(PRIOR_TEXT, ("sigma",))
            self.params["sigma"].enabled = True
            self.params["sigma"].value = 0.0
        elif model is None:
            self._show_model(NO_MODEL_TEXT, ())
        else:
            cfg = model.config
            for name, box in self.params.items():
                if getattr(cfg, name) is not None:
                    box.value = getattr(cfg, name)
            # the box starts on the model's own setting, as the CLI's --tta does
            self.quality.value = {v: k for k, v in QUALITY.items()}[cfg.tta]
            # a Poisson-type model's gain (and, after the Anscombe transform, its read
            # noise) is fixed by its training domain
            self.params["gain"].enabled = not cfg.poisson_type
            self.params["sigma"].enabled = not cfg.anscombe
            self._show_model(f"{cfg.noise} model, {self.store.source} ({model.steps} steps)",
                             model.noise_params().needs)
        self._set_running(self.worker is not None)

    def _overrides(self, model: Any) -> dict[str, float]:
        """The noise parameters the user changed from the model's own values. A field shows
        a value rounded to its decimals: an unchanged field means the model's exact value
        (a Poisson-type model's gain, for one, must match its training value exactly)."""
        cfg, changed = model.config, {}
        for name in model.noise_params().needs:
            box, trained = self.params[name], getattr(cfg, name)
            if not box.enabled:
                continue
            if trained is None or abs(box.value - trained) > 0.5 * 10.0 ** -DECIMALS[name]:
                changed[name] = box.value
        return changed

    def load_model(self, path: str | Path) -> None:
        self._attempt(self.store.load, path)

    # ---- denoising -------------------------------------------------------------------
    def start_denoising(self) -> None:
        """Read the layer and parameters on the GUI thread; denoise in napari's
        thread_worker, which yields after each plane (the progress, on the GUI thread)."""
        from napari.qt.threading import create_worker

        if self.worker is not None:
            return
        model = self.store.model
        try:
            if model is None:
                model = self._instant_model()
            model = _with_tta(model, QUALITY[self.quality.value])
            layer = self.chosen_layer()
            axes = self.axes_text()
            if is_unbound(model):
                model = self._bind_prior(model, layer, axes)
            if model.conditioned:  # a noise-conditioned model is told the sigma given
                model = rebind(model, self._overrides(model).get("sigma"))
            if is_lazy(layer):
                self._add_lazy(layer, model)
                return
            data = layer_array(layer)
            noise = model.noise_params(**self._overrides(model))
            planes = _plane_count(data, axes)
        except Noise2ScoreError as exc:
            self._error(exc)
            return
        self._stop.clear()
        target, mode = layer.name, self.output.value
        self.say(f"denoising {target}…")
        self.progress.value = 0
        worker = create_worker(
            denoise_planes, model, data, axes, noise, self.tile.value, self._stop.is_set,
            _start_thread=False, _ignore_errors=True,
            _progress={"total": planes, "desc": f"Noise2Score: denoising {target}"})
        self._activity = worker.pbar  # napari's progress bar, in the activity dock
        self._start(worker, yielded=lambda done: self._on_progress(done, planes),
                    returned=lambda result: self._deliver(result, target, mode))

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
        model, line = bind(model, list(planes), self.params["sigma"].value or None)
        self.params["sigma"].value = model.config.sigma
        self.say(line)
        return model

    def _add_lazy(self, layer: Any, model: Any) -> None:
        """A lazy (dask) layer gives a lazy result, computed where the viewer shows it."""
        from .._writer import denoised_layer

        if self.output.value == IN_PLACE:
            raise Noise2ScoreError(
                f"{layer.name!r} is a lazy (out-of-memory) layer: it cannot be changed in "
                "place; choose 'new layer'")
        data, meta, _ = denoised_layer(layer.data, model, axes=self.axes_text(),
                                       name=f"{layer.name} denoised", tile=self.tile.value)
        self.viewer.add_image(data, scale=layer.scale, translate=layer.translate, **meta)
        self.say(f"added {meta['name']} (lazy: computed where viewed; File > Save Selected "
                 "Layers with the Noise2Score writer computes and saves all of it)")

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.value = int(1000 * done / max(total, 1))
        self.say(f"denoising: plane {done} of {total}")

    def _deliver(self, result: np.ndarray, target: str, mode: str) -> None:
        if target not in self.viewer.layers:
            self._error(Noise2ScoreError(f"layer {target!r} was removed while denoising"))
            return
        layer = self.viewer.layers[target]
        if mode == IN_PLACE:
            self._undo.append((target, layer.data))  # the old array itself: exact undo
            layer.data = result
            layer.reset_contrast_limits()
            self.undo_button.enabled = True
            self.say(f"denoised {target} in place (Undo restores it)")
        else:
            self.viewer.add_image(result, name=f"{target} denoised", scale=layer.scale,
                                  translate=layer.translate, colormap=layer.colormap.name,
                                  blending=layer.blending)
            self.say(f"added {target} denoised")

    def undo(self) -> None:
        """Restore the layer that was last denoised in place."""
        while self._undo:
            name, data = self._undo.pop()
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                layer.data = data
                layer.reset_contrast_limits()
                self.say(f"restored {name}")
                break
        self.undo_button.enabled = bool(self._undo)

    @property
    def can_undo(self) -> bool:
        """Whether an in-place denoising can be undone."""
        return bool(self._undo)

    def _on_finished(self) -> None:
        self.worker = self._activity = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        from ..core.prior import prior_available

        usable = self.store.model is not None or prior_available()
        self.denoise_button.enabled = not running and usable
        self.stop_button.enabled = running

    def _error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_info

        if isinstance(exc, Cancelled):
            self.say("stopped; the layer is unchanged")
            show_info("Noise2Score: denoising stopped")
            return
        super()._error(exc)


def _plane_count(data: np.ndarray, axes: str | None) -> int:
    from ..core.stack import check_axes

    axes = check_axes(axes, data.ndim)
    stack = [n for n, a in zip(data.shape, axes, strict=True) if a not in "YX"]
    return int(np.prod(stack, dtype=np.int64))


def denoise_planes(model: Any, data: np.ndarray, axes: str | None, noise: Any, tile: int,
                   stop: Any) -> Iterator[int]:
    """Denoise ``data`` plane by plane (TTA resolved for the whole layer), yielding the planes
    done, polling ``stop`` between them; returns the result (float32, same layout)."""
    from ..core.inference import denoise_array, resolve_tta, resolve_wiener
    from ..core.stack import check_image, from_planes, to_planes

    check_image(data)
    planes, axes = to_planes(data, axes)
    model = replace(model, config=replace(
        model.config, tta=resolve_tta(model.config.tta, planes.size),
        wiener=resolve_wiener(model.config.wiener, planes.size)))
    out = np.empty(planes.shape, dtype=np.float32)
    for i, plane in enumerate(planes):
        if stop():
            raise Cancelled("denoising stopped")
        out[i] = denoise_array(model, plane, None, noise, tile)
        yield i + 1
    return from_planes(out, data.shape, axes)


def _with_tta(model: Any, tta: bool | None) -> Any:
    """The model denoising with the quality field's setting (None: auto, by size): the
    8-fold average and the Wiener step together."""
    return replace(model, config=replace(model.config, tta=tta, wiener=tta))
