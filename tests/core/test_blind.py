"""Blind Tweedie: the noise parameter found at test time, one network pass for the sweep."""

import numpy as np
import pytest
import tifffile

from helpers import smooth_image
from napari_noise2score import api, train
from napari_noise2score.cli import main
from napari_noise2score.core.blind import BlindResult, blind_search, score_estimate
from napari_noise2score.core.errors import Noise2ScoreError
from napari_noise2score.core.noise import NoiseParams, simulate

FAST = dict(max_seconds=None, max_steps=200, patch_size=48, batch_size=8, device="cpu")
TRUE_SIGMA = 30.0


@pytest.fixture(scope="module")
def gaussian_case():
    """Noise sigma 30, model trained with a wrong sigma (20): the blind search must fix it."""
    clean = np.stack([smooth_image(96, s) for s in range(3)]) * 255
    noisy = simulate(clean, NoiseParams("gaussian", sigma=TRUE_SIGMA), seed=3).astype(np.float32)
    model = train(noisy, noise="gaussian", sigma=20.0, **FAST)
    return noisy, model


def count_forward(monkeypatch, model) -> list:
    """Count the network's forward passes."""
    calls = []
    forward = model.net.forward

    def counted(x):
        calls.append(tuple(x.shape))
        return forward(x)

    monkeypatch.setattr(model.net, "forward", counted)
    return calls


def test_search_recovers_sigma_with_one_pass_per_plane(gaussian_case, monkeypatch):
    # measured during development on this case: 30.3 (trained with 20) and 30.0 (with 30)
    noisy, model = gaussian_case
    calls = count_forward(monkeypatch, model)
    result = blind_search(model, list(noisy))
    assert len(calls) == len(noisy)  # 41 grid values, one pass per 96 x 96 plane
    assert len(result.grid) == len(result.quality) == 41
    assert result.parameter == "sigma" and not result.on_edge
    assert result.value == pytest.approx(TRUE_SIGMA, rel=0.15)
    assert result.quality[result.grid.index(result.value)] == min(result.quality)
    assert "sigma = " in result.describe()


def test_score_estimate_is_close_with_two_passes(gaussian_case, monkeypatch):
    # measured: 33.3 and 35.2 for true 30 (the estimate reads high: edges and texture)
    noisy, model = gaussian_case
    calls = count_forward(monkeypatch, model)
    result = score_estimate(model, list(noisy))
    assert len(calls) == 2 * len(noisy)
    assert result.value == pytest.approx(TRUE_SIGMA, rel=0.3)


def test_api_search_on_a_stack_then_denoise(gaussian_case):
    noisy, model = gaussian_case
    result = api.blind_search(model, noisy, axes="TYX", grid=[10, 20, 30, 40])
    assert isinstance(result, BlindResult) and result.value in (20.0, 30.0, 40.0)
    out = api.denoise(noisy[:1], model, **{result.parameter: result.value})
    assert out.shape == noisy[:1].shape and np.all(np.isfinite(out))


def test_bounded_sample_crops_large_planes(gaussian_case):
    noisy, model = gaussian_case
    big = np.tile(noisy[0], (4, 4))  # 384 x 384
    result = blind_search(model, [big], max_pixels=128 * 128)
    assert result.pixels <= 128 * 128


def test_gamma_shape_sweep():
    clean = np.stack([smooth_image(96, s) for s in range(2)]) * 100
    noisy = simulate(clean, NoiseParams("gamma", shape=30.0), seed=5).astype(np.float32)
    model = train(noisy, noise="gamma", shape=30.0, **{**FAST, "max_steps": 100})
    grid = [3.0, 10.0, 30.0, 100.0, 300.0]
    result = blind_search(model, list(noisy), grid=grid)
    assert result.parameter == "shape" and result.grid == tuple(grid)
    assert np.all(np.isfinite(result.quality))
    assert result.value in grid
    estimate = score_estimate(model, list(noisy))
    assert estimate.parameter == "shape" and estimate.value > 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(grid=[10, 0, 20]), "must be > 0"),
        (dict(grid=[10, -5]), "must be > 0"),
        (dict(grid=[10, float("nan")]), "finite numbers"),
        (dict(grid=[]), "finite numbers"),
        (dict(noise="poisson"), "trained for gaussian noise"),
        (dict(parameter="gain"), "varies sigma, not gain"),
    ],
)
def test_bad_search_input_is_a_clear_error(gaussian_case, kwargs, message):
    noisy, model = gaussian_case
    with pytest.raises(Noise2ScoreError, match=message):
        blind_search(model, list(noisy), **kwargs)


def test_bad_api_input_is_a_clear_error(gaussian_case):
    noisy, model = gaussian_case
    with pytest.raises(Noise2ScoreError, match="unknown blind method"):
        api.blind_search(model, noisy, method="guess")
    with pytest.raises(Noise2ScoreError, match="takes no grid"):
        api.blind_search(model, noisy, method="score", grid=[10, 20])
    with pytest.raises(Noise2ScoreError, match="at least 2 dimensions"):
        api.blind_search(model, noisy[0, 0])


def test_cli_denoise_blind_prints_the_parameter_first(gaussian_case, tmp_path, capsys):
    noisy, model = gaussian_case
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, noisy[0])
    model_file = model.save(tmp_path / "m.n2s")
    out = tmp_path / "out.tif"
    args = ["denoise", str(path), "--model", str(model_file), "-o", str(out), "--device", "cpu"]
    assert main([*args, "--blind"]) == 0
    text = capsys.readouterr().out
    assert "blind search (total variation): sigma = " in text
    assert text.index("sigma = ") < text.index("wrote")
    assert tifffile.imread(out).shape == noisy[0].shape
    assert main([*args, "--blind", "--sigma", "25", "--overwrite"]) == 2
    assert "either --sigma or --blind" in capsys.readouterr().err
