"""The dock widgets in a real napari viewer (pytest-qt; under Xvfb in CI)."""

import numpy as np
import pytest
from napari.utils import progress

from helpers import PLUGIN, EventLoopWatch, psnr, smooth_image, tiny_model
from napari_noise2score.core import prior
from napari_noise2score.widgets import DenoiseWidget, TrainWidget
from napari_noise2score.widgets.denoise_widget import IN_PLACE, NEW_LAYER
from napari_noise2score.widgets.train_widget import NOISE_FIELDS


@pytest.fixture
def viewer_with_widgets(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, train_w = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    _, denoise_w = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    assert isinstance(train_w, TrainWidget) and isinstance(denoise_w, DenoiseWidget)
    yield viewer, train_w, denoise_w
    for w in (train_w, denoise_w):  # a test that failed midway must not leak a thread
        w.stop()
        qtbot.waitUntil(lambda w=w: not w.running, timeout=10_000)


def click(button):
    """Press a (magicgui) push button as a user does."""
    button.native.click()


def shown(widget, field):
    return field.native.isVisibleTo(widget.native)


def use_gaussian(train_w, sigma):
    train_w.fields["noise"].value = "gaussian"
    train_w.fields["sigma"].value = sigma


def fast_settings(train_w, seconds=6.0):
    train_w.fields["max_seconds"].value = seconds
    train_w.fields["patch_size"].value = 48
    train_w.fields["batch_size"].value = 8
    train_w.fields["device"].value = "cpu"


def wait_idle(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


def test_train_then_denoise_sample(viewer_with_widgets, qtbot):
    viewer, train_w, denoise_w = viewer_with_widgets
    viewer.open_sample(PLUGIN, "synthetic_fluorescence")
    assert train_w.layer.value.name == "noisy sample"
    assert train_w.axes.value == "ZYX"
    meta = viewer.layers["noisy sample"].metadata
    train_w.fields["noise"].value = "poisson-gaussian"
    train_w.fields["gain"].value = meta["gain"]
    train_w.fields["sigma"].value = meta["read_sigma"]
    assert shown(train_w, train_w.fields["sigma"]) and not shown(train_w,
                                                                 train_w.fields["shape"])
    fast_settings(train_w, seconds=120.0)
    train_w.fields["max_steps"].value = 300
    click(train_w.train_button)
    assert train_w.running and not train_w.train_button.enabled
    assert isinstance(train_w.activity, progress)  # napari's progress, in the activity dock
    wait_idle(qtbot, train_w)
    assert train_w.store.model is not None, train_w.last_error
    assert len(train_w.loss_plot.values) > 10
    # the Denoise widget sees the model, with its parameters prefilled
    assert train_w.activity is None
    assert denoise_w.denoise_button.enabled
    assert denoise_w.params["sigma"].value == pytest.approx(meta["read_sigma"])
    denoise_w.choose_layer("noisy sample")
    click(denoise_w.denoise_button)
    assert isinstance(denoise_w.activity, progress)
    wait_idle(qtbot, denoise_w)
    assert "noisy sample denoised" in viewer.layers, denoise_w.last_error
    clean = viewer.layers["clean reference"].data
    noisy = viewer.layers["noisy sample"].data
    out = viewer.layers["noisy sample denoised"].data
    peak = float(clean.max())
    assert psnr(clean, out, peak) > psnr(clean, noisy, peak) + 1.0
    assert train_w.store.model.steps == 300


def test_stop_ends_training_promptly(viewer_with_widgets, qtbot):
    viewer, train_w, _ = viewer_with_widgets
    viewer.add_image(np.random.default_rng(0).random((128, 128)).astype(np.float32), name="r")
    use_gaussian(train_w, 0.1)
    fast_settings(train_w, seconds=600.0)
    click(train_w.train_button)
    qtbot.waitUntil(lambda: len(train_w.loss_plot.values) >= 2, timeout=30_000)
    click(train_w.stop_button)
    wait_idle(qtbot, train_w, timeout=3_000)
    assert train_w.store.model is not None and train_w.store.model.steps < 200
    assert train_w.status.text().startswith("stopped")


def test_in_place_denoise_and_undo(viewer_with_widgets, qtbot, tmp_path):
    viewer, train_w, denoise_w = viewer_with_widgets
    rng = np.random.default_rng(1)
    original = (rng.random((96, 96)) * 200).astype(np.uint8)
    layer = viewer.add_image(original.copy(), name="img")
    use_gaussian(train_w, 20.0)
    fast_settings(train_w, seconds=3.0)
    click(train_w.train_button)
    wait_idle(qtbot, train_w)
    # round trip through a model file, as a user would
    train_w.save_model(tmp_path / "m.n2s")
    denoise_w.load_model(tmp_path / "m.n2s")
    assert "loaded from m.n2s" in denoise_w.model_label.text()
    denoise_w.output.value = IN_PLACE
    click(denoise_w.denoise_button)
    wait_idle(qtbot, denoise_w)
    assert layer.data.dtype == np.float32 and not np.array_equal(layer.data, original)
    assert denoise_w.undo_button.enabled and denoise_w.can_undo
    click(denoise_w.undo_button)
    assert layer.data.dtype == np.uint8 and np.array_equal(layer.data, original)
    assert not denoise_w.undo_button.enabled and not denoise_w.can_undo


def test_bad_layers_give_a_notification_not_a_crash(viewer_with_widgets, qtbot, monkeypatch,
                                                    tmp_path):
    import napari.utils.notifications as notifications

    shown = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: shown.append(msg))
    viewer, train_w, denoise_w = viewer_with_widgets
    viewer.add_labels(np.zeros((64, 64), dtype=np.uint8), name="labels")
    # labels are not offered, and with no image the Train button explains itself
    assert len(train_w.layer.choices) == 0
    click(train_w.train_button)
    assert "choose an image layer" in shown[-1] and not train_w.running
    viewer.add_image(np.ones((1, 1), dtype=np.float32) * np.array([[3.0]]), name="dot")
    viewer.add_image(np.random.default_rng(0).random((8, 8)), name="tiny")
    train_w.choose_layer("tiny")
    use_gaussian(train_w, 0.1)
    fast_settings(train_w)
    click(train_w.train_button)
    wait_idle(qtbot, train_w)
    assert "too small" in shown[-1]
    train_w.choose_layer("dot")
    click(train_w.train_button)
    wait_idle(qtbot, train_w)
    assert "constant" in shown[-1]
    train_w.fields["sigma"].value = 0.0
    click(train_w.train_button)
    assert "sigma must be > 0" in shown[-1]
    # no model (and no shipped prior): Denoise explains rather than failing
    absent = dict.fromkeys(prior.PRIOR_FILES, tmp_path / "absent.pt")
    monkeypatch.setattr(prior, "PRIOR_FILES", absent)
    denoise_w.start_denoising()
    assert "no model" in shown[-1]
    # a file that is not a model: a notification, and still no model
    bad = tmp_path / "not_a_model.n2s"
    bad.write_text("hello")
    train_w.load_model(bad)
    assert "not a readable napari-noise2score model" in shown[-1]
    assert train_w.store.model is None


def test_estimate_button_shows_parameters_before_use(viewer_with_widgets):
    viewer, train_w, _ = viewer_with_widgets
    rng = np.random.default_rng(5)
    clean = np.stack([np.where(smooth_image(256, s) > 0.35, smooth_image(256, s), 0) * 400
                      for s in range(3)])
    noisy = 3.0 * rng.poisson(clean / 3.0) + 50 + 2.0 * rng.standard_normal(clean.shape)
    viewer.add_image(noisy.astype(np.float32), name="camera")
    train_w.fields["noise"].value = "auto"
    assert not any(shown(train_w, train_w.fields[name]) for name in NOISE_FIELDS)
    click(train_w.estimate_button)
    assert train_w.fields["noise"].value == "poisson-gaussian"
    assert train_w.fields["gain"].value == pytest.approx(3.0, rel=0.15)
    assert train_w.fields["offset"].value == pytest.approx(50.0, abs=1.5)
    assert train_w.status.text().startswith("estimated noise model: poisson-gaussian")
    config = train_w.config()
    assert config.noise == "poisson-gaussian" and config.offset == pytest.approx(50.0, abs=1.5)


def test_lazy_layer_gives_lazy_result(viewer_with_widgets, qtbot, monkeypatch):
    import dask.array as da
    import napari.utils.notifications as notifications

    shown = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: shown.append(msg))
    viewer, train_w, denoise_w = viewer_with_widgets
    rng = np.random.default_rng(2)
    stack = (rng.random((3, 96, 96)) * 100).astype(np.float32)
    viewer.add_image(stack, name="small")
    use_gaussian(train_w, 10.0)
    fast_settings(train_w)
    train_w.fields["max_steps"].value = 20
    click(train_w.train_button)
    wait_idle(qtbot, train_w)
    viewer.add_image(da.from_array(stack, chunks=(1, 96, 96)), name="lazy")
    denoise_w.choose_layer("lazy")
    denoise_w.output.value = IN_PLACE
    click(denoise_w.denoise_button)
    assert "cannot be changed in place" in shown[-1]
    denoise_w.output.value = NEW_LAYER
    click(denoise_w.denoise_button)
    result = viewer.layers["lazy denoised"].data
    assert not isinstance(result, np.ndarray)  # lazy: computed where viewed
    eager = denoise_w.store.model
    from napari_noise2score import denoise

    np.testing.assert_allclose(np.asarray(result[1]), denoise(stack, eager)[1], atol=1e-3)


def test_sample_with_the_defaults_denoises_well_and_never_freezes(make_napari_viewer, qtbot):
    """A newcomer's path: open the sample, press Train with the defaults (auto noise) for
    60 s, then Denoise. The result is >= 8 dB above the noisy sample against the clean
    reference; napari's event loop never stalls for 100 ms or more meanwhile, except while
    the result layer is added, which costs no more than napari's own adding of that array
    (napari builds the layer's controls and canvas node on the GUI thread: 0.1-0.2 s on a
    slow 2-core CPU)."""
    import time

    from napari_noise2score.widgets import engine_ready

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic_fluorescence")
    _, train_w = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    _, denoise_w = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    assert train_w.layer.value.name == "noisy sample"  # not the hidden reference
    assert train_w.fields["noise"].value == "auto"
    train_w.fields["max_seconds"].value = 60.0
    qtbot.waitUntil(engine_ready, timeout=60_000)  # done while the user reads

    delivery: list[float] = []
    deliver = denoise_w._deliver

    def timed_deliver(*args):
        delivery.append(time.perf_counter())
        deliver(*args)
        delivery.append(time.perf_counter())

    denoise_w._deliver = timed_deliver
    watch = EventLoopWatch()
    watch.start()
    click(train_w.train_button)
    wait_idle(qtbot, train_w, timeout=120_000)
    assert train_w.store.model is not None, train_w.last_error
    assert denoise_w.layer.value.name == "noisy sample"
    click(denoise_w.denoise_button)
    wait_idle(qtbot, denoise_w, timeout=60_000)
    qtbot.wait(200)
    watch.stop()
    out = viewer.layers["noisy sample denoised"].data
    clean, noisy = viewer.layers["clean reference"].data, viewer.layers["noisy sample"].data
    peak = float(clean.max())
    gain = psnr(clean, out, peak) - psnr(clean, noisy, peak)
    assert gain >= 8.0, f"{gain:.2f} dB"

    start, end = delivery
    t = np.asarray(watch.ticks)
    gaps = np.diff(t)
    apart = (t[1:] < start) | (t[:-1] > end)  # gaps that do not overlap the delivery
    worst = int(np.flatnonzero(apart)[np.argmax(gaps[apart])])
    stall = float(gaps[worst])
    assert stall < 0.1, (f"longest event-loop stall {stall * 1000:.0f} ms, "
                         f"{t[worst] - t[0]:.1f} s in; the threads then:\n"
                         + watch.stacks_at(worst))
    layer = viewer.layers["noisy sample"]
    began = time.perf_counter()  # napari's own cost of adding the same array as a layer
    viewer.add_image(out.copy(), name="same array", scale=layer.scale,
                     colormap=layer.colormap.name, blending=layer.blending)
    own = time.perf_counter() - began
    assert end - start < 2 * own + 0.05, f"delivery {end - start:.3f} s, napari's {own:.3f} s"


def test_denoise_offers_the_pretrained_prior_before_any_training(viewer_with_widgets, qtbot):
    from napari_noise2score.core.noise import NoiseParams, simulate

    viewer, _, denoise_w = viewer_with_widgets
    clean = smooth_image(128, 5) * 200
    noisy = np.clip(simulate(clean, NoiseParams("gaussian", 20.0), seed=3), 0, 255)
    viewer.add_image(noisy.astype(np.uint8), name="noisy")
    assert denoise_w.store.model is None and denoise_w.denoise_button.enabled
    assert "pretrained prior" in denoise_w.model_label.text()
    denoise_w.quality.value = "fast (one pass)"
    denoise_w.start_denoising()  # sigma 0: estimated from the layer
    wait_idle(qtbot, denoise_w)
    assert "noisy denoised" in viewer.layers, denoise_w.last_error
    assert 15 < denoise_w.params["sigma"].value < 25
    out = viewer.layers["noisy denoised"].data
    assert psnr(clean, out, 255) > psnr(clean, noisy, 255) + 4.0


def test_train_fields_follow_train_config(make_napari_viewer):
    """The Train widget's fields are TrainConfig's: every field is shown or listed in
    NOT_SHOWN (with a reason), and an untouched widget describes TrainConfig's defaults
    within its LIMITS. Fails when a field is added, renamed or its default changes in one
    place only."""
    from dataclasses import fields, replace

    from napari_noise2score.core.config import LIMITS, NOT_EXPOSED, TrainConfig
    from napari_noise2score.widgets.train_widget import NOT_SHOWN, ZERO_IS_AUTO

    train_w = TrainWidget(make_napari_viewer())
    names = {f.name for f in fields(TrainConfig)}
    assert set(train_w.fields) | set(NOT_SHOWN) == names
    assert not set(train_w.fields) & set(NOT_SHOWN)
    assert all(isinstance(why, str) and why for why in NOT_SHOWN.values())
    assert set(NOT_EXPOSED) <= set(NOT_SHOWN)  # what no front end sets, the widget hides
    assert train_w.config() == TrainConfig().validate()  # no layer: no axes
    for name, (lo, hi) in LIMITS.items():
        if name not in train_w.fields:
            continue
        box = train_w.fields[name]
        if hasattr(box, "choices"):
            assert set(box.choices) - {None} == set(range(lo, hi + 1)), name
        else:
            assert (box.min, box.max) == (0 if name in ZERO_IS_AUTO else lo, hi), name
    # any config shows and reads back unchanged
    other = replace(TrainConfig(), noise="poisson-gaussian", sigma=2.5, gain=3.0, offset=7.0,
                    max_steps=50, patch_size=32, width=16, decorrelate=2, transform="none",
                    init="scratch", seed=4, learning_rate=2e-4, mixed_mode="affine")
    train_w.set_config(other)
    assert train_w.config() == other.validate()


def test_layer_box_follows_the_layer_list(make_napari_viewer):
    viewer = make_napari_viewer()
    _, train_w = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    assert train_w.layer.value is None and train_w.axes.value == ""
    viewer.add_labels(np.zeros((8, 8), dtype=np.uint8), name="labels")  # not an image
    first = viewer.add_image(np.zeros((4, 32, 32), np.float32), name="stack")
    assert [layer.name for layer in train_w.layer.choices] == ["stack"]
    assert train_w.layer.value is first and train_w.axes.value == "ZYX"
    viewer.add_image(np.zeros((32, 32), np.float32), name="hidden", visible=False)
    viewer.add_image(np.zeros((32, 32), np.float32), name="plane")
    assert train_w.layer.value is first  # a new layer does not take over the choice
    first.name = "renamed"
    assert "renamed" in [layer.name for layer in train_w.layer.choices]
    viewer.layers.selection.active = viewer.layers["hidden"]
    viewer.layers.remove("renamed")  # the chosen one goes: the top visible image
    assert train_w.layer.value.name == "plane" and train_w.axes.value == "YX"


def test_quality_box_follows_the_model_tta(viewer_with_widgets, tmp_path):
    from dataclasses import replace

    _, train_w, denoise_w = viewer_with_widgets
    assert denoise_w.quality.value == "auto"
    for tta, shown_text in ((True, "best (8-fold average, Wiener step)"),
                            (False, "fast (one pass)"), (None, "auto")):
        model = tiny_model()
        model = replace(model, config=replace(model.config, tta=tta))
        denoise_w.load_model(model.save(tmp_path / f"m{tta}.n2s"))
        assert denoise_w.quality.value == shown_text, denoise_w.last_error


def test_loss_plot_keeps_at_most_its_cap(qtbot):
    from napari_noise2score.widgets._common import LossPlot

    plot = LossPlot()
    for i in range(LossPlot.CAP + 1):
        plot.add(1.0 + i, redraw=False)
    assert isinstance(plot.values, tuple)  # read-only: values go through add
    assert LossPlot.CAP // 2 <= len(plot.values) <= LossPlot.CAP
    assert plot.values[-1] == LossPlot.CAP + 1.0
    plot.clear()
    assert plot.values == ()


def test_no_text_is_cut_off_at_the_default_dock_width(make_napari_viewer, qtbot):
    """Every label fits on its line or wraps (with the height its wrapped text needs), in
    a shown viewer at napari's default dock width, with long texts in the status lines and
    the model label (issue 13: the model label was cut off)."""
    from qtpy.QtWidgets import QLabel

    from napari_noise2score.widgets import engine_ready

    viewer = make_napari_viewer(show=True)
    viewer.open_sample(PLUGIN, "synthetic_fluorescence")
    _, train_w = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    _, denoise_w = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise", tabify=False)
    train_w.advanced.expand(animate=False)
    qtbot.waitUntil(engine_ready, timeout=60_000)  # torch's lazy imports done
    denoise_w.store.set(tiny_model(), "trained on noisy sample, a layer with a long name")
    for w in (train_w, denoise_w):
        w.say("step 2023, loss 0.0123, sigma_a 0.0456, ETA 1:23 " * 3)
    qtbot.wait(300)
    assert "long name (0 steps)" in denoise_w.model_label.text()
    checked = 0
    for w in (train_w, denoise_w):
        for label in w.native.findChildren(QLabel):
            if not label.isVisible() or not label.text():
                continue
            checked += 1
            room = label.contentsRect().width()
            if label.wordWrap():
                assert label.height() >= label.heightForWidth(label.width()), label.text()
            else:
                assert label.fontMetrics().horizontalAdvance(label.text()) <= room, label.text()
    assert checked >= 20
