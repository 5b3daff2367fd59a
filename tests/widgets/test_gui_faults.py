"""Issue 14, part 3: faults in a real viewer. Closing the viewer or a dock widget while a
worker trains or denoises, removing the layer being denoised, pressing Train twice, a
corrupt model file: no crash, a notification where there is something to say, the worker
stopped and no thread left running. Outcomes are counted (``helpers.record_case``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from qtpy.QtCore import QThreadPool

from helpers import PLUGIN, record_case
from napari_noise2score.core.config import TrainConfig
from napari_noise2score.core.model import Noise2ScoreModel, build_network
from napari_noise2score.widgets import DenoiseWidget, TrainWidget


@pytest.fixture
def notices(monkeypatch) -> list[str]:
    """The error notifications the widgets show."""
    from napari.utils import notifications

    shown: list[str] = []
    monkeypatch.setattr(notifications, "show_error", shown.append)
    return shown


@pytest.fixture
def model_file(tmp_path) -> Path:
    cfg = TrainConfig(noise="gaussian", sigma=0.1, width=4, depth=1, unshuffle=2,
                      max_steps=1, decorrelate=1, tta=False)
    torch.manual_seed(0)
    model = Noise2ScoreModel(cfg, build_network(cfg).eval(), scale=1.0, final_sigma_a=0.03)
    return model.save(tmp_path / "m.n2s")


def widgets(viewer) -> tuple[TrainWidget, DenoiseWidget]:
    _, train_w = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    _, denoise_w = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    return train_w, denoise_w


def start_training(viewer, train_w, qtbot) -> None:
    viewer.add_image(np.random.default_rng(0).random((128, 128)).astype(np.float32), name="r")
    values = {"noise": "gaussian", "sigma": 0.1, "max_seconds": 600.0, "patch_size": 32,
              "batch_size": 2, "device": "cpu"}
    for name, value in values.items():
        train_w.fields[name].value = value
    train_w.train_button.native.click()
    qtbot.waitUntil(lambda: len(train_w.loss_plot.values) >= 1, timeout=60_000)


def start_denoising(viewer, denoise_w, model_file, qtbot) -> None:
    viewer.add_image(np.random.default_rng(0).random((40, 256, 256)).astype(np.float32),
                     name="big")
    denoise_w.load_model(model_file)
    denoise_w.choose_layer("big")
    denoise_w.tile.value = denoise_w.tile.min
    denoise_w.denoise_button.native.click()
    assert denoise_w.running
    qtbot.waitUntil(lambda: denoise_w.progress.value >= 1, timeout=60_000)


def threads_done(seconds: float = 30) -> bool:
    return QThreadPool.globalInstance().waitForDone(int(seconds * 1000))


@pytest.mark.parametrize("what", ["viewer", "dock widget"])
@pytest.mark.parametrize("phase", ["training", "denoising"])
def test_closing_during_a_run_stops_the_worker(make_napari_viewer, qtbot, model_file, what,
                                               phase):
    viewer = make_napari_viewer()
    train_w, denoise_w = widgets(viewer)
    widget = train_w if phase == "training" else denoise_w
    if phase == "training":
        start_training(viewer, train_w, qtbot)
    else:
        start_denoising(viewer, denoise_w, model_file, qtbot)
    if what == "viewer":
        viewer.close()
    else:
        viewer.window.remove_dock_widget(widget.native)
        widget.close()
    stopped = widget.stop_requested and threads_done()
    record_case(f"GUI: close the {what} during {phase}", "accepted" if stopped else "hang")
    assert stopped


def test_removing_the_layer_being_denoised_notifies(make_napari_viewer, qtbot, model_file,
                                                    notices):
    viewer = make_napari_viewer()
    _, denoise_w = widgets(viewer)
    start_denoising(viewer, denoise_w, model_file, qtbot)
    viewer.layers.remove("big")
    qtbot.waitUntil(lambda: not denoise_w.running, timeout=300_000)
    told = any("removed" in n for n in notices) and "big denoised" not in viewer.layers
    record_case("GUI: remove the layer being denoised", "clear error" if told else "crash")
    assert told and threads_done(), notices


def test_pressing_train_twice_runs_one_worker(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    train_w, _ = widgets(viewer)
    start_training(viewer, train_w, qtbot)
    first = train_w.worker
    train_w.start_training()  # the button is disabled; the method itself must refuse too
    one = train_w.worker is first and QThreadPool.globalInstance().activeThreadCount() == 1
    train_w.stop_training()
    qtbot.waitUntil(lambda: not train_w.running, timeout=60_000)
    kept = train_w.store.model is not None
    record_case("GUI: press Train twice", "accepted" if one and kept else "crash")
    assert one and kept and threads_done()


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "empty"])
def test_loading_a_corrupt_model_notifies(make_napari_viewer, tmp_path, model_file, notices,
                                          damage):
    viewer = make_napari_viewer()
    train_w, denoise_w = widgets(viewer)
    bad = tmp_path / "bad.n2s"
    raw = model_file.read_bytes()
    bad.write_bytes({"truncated": raw[: len(raw) // 2], "empty": b"",
                     "random bytes": np.random.default_rng(0).bytes(4096)}[damage])
    offered = denoise_w.model_label.text()  # the shipped prior, before any training
    for w in (train_w, denoise_w):
        w.load_model(bad)
    told = len(notices) == 2 and all("model" in n for n in notices)
    unchanged = denoise_w.store.model is None and denoise_w.model_label.text() == offered
    record_case("GUI: load a corrupt model", "clear error" if told and unchanged else "crash")
    assert told and unchanged, notices
