"""End to end: training raises PSNR, models survive save/load, stop is prompt."""

import threading

import numpy as np
import pytest
import torch

from helpers import psnr, smooth_image
from napari_noise2score import denoise, load_model, train
from napari_noise2score.api import make_config
from napari_noise2score.core.errors import ModelFileError, Noise2ScoreError
from napari_noise2score.core.noise import NoiseParams, simulate
from napari_noise2score.core.training import TrainDone, TrainProgress, iter_training

FAST = dict(max_seconds=None, max_steps=200, patch_size=48, batch_size=8, device="cpu")


@pytest.fixture(scope="module")
def gaussian_case():
    clean = np.stack([smooth_image(96, s) for s in range(3)]) * 255
    noisy = simulate(clean, NoiseParams("gaussian", sigma=30.0), seed=3).astype(np.float32)
    model = train(noisy, noise="gaussian", sigma=30.0, **FAST)
    return clean, noisy, model


def test_short_training_raises_psnr(gaussian_case):
    clean, noisy, model = gaussian_case
    out = denoise(noisy, model)
    assert out.shape == noisy.shape and out.dtype == np.float32
    before, after = psnr(clean, noisy, 255), psnr(clean, out, 255)
    assert after > before + 3.0, (before, after)


def test_save_load_gives_identical_output(gaussian_case, tmp_path):
    _, noisy, model = gaussian_case
    path = model.save(tmp_path / "m.n2s")
    again = load_model(path, device="cpu")
    assert again.config == model.config and again.scale == model.scale
    np.testing.assert_array_equal(denoise(noisy, again), denoise(noisy, model))


def test_noise_parameter_override_changes_strength(gaussian_case):
    _, noisy, model = gaussian_case
    weak = denoise(noisy[:1], model, sigma=10.0)  # within the prior's range at this scale
    strong = denoise(noisy[:1], model)
    assert np.abs(weak - noisy[:1]).mean() < np.abs(strong - noisy[:1]).mean()


def test_model_for_another_noise_model_is_refused(gaussian_case):
    _, noisy, model = gaussian_case
    with pytest.raises(Noise2ScoreError, match="trained for gaussian noise"):
        model.noise_params(noise="poisson")


def test_model_applied_to_wrong_dimensionality(gaussian_case):
    _, _, model = gaussian_case
    with pytest.raises(Noise2ScoreError, match="at least 2 dimensions"):
        denoise(np.ones(50, np.float32), model)
    with pytest.raises(Noise2ScoreError, match="name 3 dimensions"):
        denoise(np.ones((40, 40), np.float32), model, axes="ZYX")


def test_stop_flag_ends_training_within_one_step():
    rng = np.random.default_rng(0)
    data = rng.random((64, 64)).astype(np.float32)
    config = make_config(noise="gaussian", sigma=0.1, **{**FAST, "max_steps": 10_000})
    flag = threading.Event()
    steps = []
    for update in iter_training(data, config, stop=flag.is_set):
        if isinstance(update, TrainProgress):
            steps.append(update.step)
            if update.step == 3:
                flag.set()
        else:
            done = update
    assert isinstance(done, TrainDone) and done.stopped
    assert steps[-1] == 3 and done.model.steps == 3


def done_model(updates):
    return updates[-1].model


def test_progress_updates_are_typed_and_monotonic():
    data = np.random.default_rng(1).random((2, 64, 64)).astype(np.float32)
    config = make_config(noise="gaussian", sigma=0.1, **{**FAST, "max_steps": 5}, init="scratch")
    updates = list(iter_training(data, config))
    progress = [u for u in updates if isinstance(u, TrainProgress)]
    assert [u.step for u in progress] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(u.loss) for u in progress)
    sig = [u.sigma_a for u in progress]
    # Gaussian noise: sigma_a anneals from the noise std (0.1 here) towards a third of it
    assert sig == sorted(sig, reverse=True) and sig[0] == pytest.approx(0.1, rel=0.01)
    assert done_model(updates).final_sigma_a == pytest.approx(sig[-1])
    assert progress[-1].fraction == 1.0 and progress[-1].eta == 0.0
    assert isinstance(updates[-1], TrainDone) and not updates[-1].stopped


@pytest.mark.parametrize(
    "noise, kwargs, scale, gain_db",
    [
        ("poisson", dict(gain=2.0), 100.0, 2.0),
        ("gamma", dict(shape=30.0), 100.0, 0.7),
        ("poisson-gaussian", dict(gain=2.0, sigma=3.0), 100.0, 2.0),
    ],
)
def test_every_noise_model_trains_and_improves(noise, kwargs, scale, gain_db):
    clean = np.stack([smooth_image(96, s) for s in range(2)]) * scale
    noisy = simulate(clean, NoiseParams(noise, **kwargs), seed=5).astype(np.float32)
    model = train(noisy, noise=noise, **kwargs, **{**FAST, "max_steps": 300})
    out = denoise(noisy, model)
    assert np.all(np.isfinite(out))
    assert psnr(clean, out, scale) > psnr(clean, noisy, scale) + gain_db


def test_uint16_and_uint8_inputs_keep_their_units():
    clean = smooth_image(64) * 4000
    noisy = np.clip(simulate(clean, NoiseParams("gaussian", sigma=200.0), seed=0), 0, 65535)
    noisy16 = noisy.astype(np.uint16)
    model = train(noisy16, noise="gaussian", sigma=200.0, **{**FAST, "max_steps": 20})
    out = denoise(noisy16, model)
    assert out.dtype == np.float32
    assert abs(out.mean() - noisy16.mean()) < 0.05 * noisy16.mean()
    assert model.scale > 1000


@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros((0, 64)), "empty"),
        (np.full((64, 64), np.nan), "NaN"),
        (np.full((64, 64), 7.0), "constant"),
        (np.ones((4, 4)) * np.arange(4), "too small"),
        (np.ones(64), "at least 2 dimensions"),
        (np.ones((2, 2, 2, 2, 2, 2)), "at most 5"),
    ],
)
def test_bad_training_input_gets_a_clear_error(data, message):
    with pytest.raises(Noise2ScoreError, match=message):
        train(data, noise="gaussian", sigma=0.1, **FAST)


@pytest.mark.parametrize("payload", [b"", b"not a model at all", None])
def test_corrupt_or_foreign_model_files(tmp_path, gaussian_case, payload):
    path = tmp_path / "bad.n2s"
    if payload is None:  # a truncated real model
        good = gaussian_case[2].save(tmp_path / "good.n2s").read_bytes()
        path.write_bytes(good[: len(good) // 2])
    else:
        path.write_bytes(payload)
    with pytest.raises(ModelFileError):
        load_model(path, device="cpu")


def test_foreign_torch_file_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ModelFileError, match="not a napari-noise2score model"):
        load_model(path, device="cpu")
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.n2s", device="cpu")


def test_tiled_inference_matches_whole_plane(gaussian_case):
    from napari_noise2score.core.inference import predict_plane

    _, _, model = gaussian_case
    rng = np.random.default_rng(0)
    plane = rng.random((203, 157)).astype(np.float32)  # odd sizes: padding on two edges
    whole = predict_plane(model.net, plane, tile=4096, overlap=0)
    for tile, overlap in ((64, 96), (48, 128), (100, 112)):
        tiled = predict_plane(model.net, plane, tile=tile, overlap=overlap)
        np.testing.assert_allclose(tiled, whole, atol=2e-4 * np.abs(whole).max())
