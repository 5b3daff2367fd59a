"""Low photon counts: the Anscombe-transform route (generalized Anscombe transform, Gaussian
score and Tweedie, exact unbiased inverse) on clipped 8-bit two-photon-like captures."""

import numpy as np
import pytest

from napari_noise2score import denoise, load_model, train
from napari_noise2score._sample_data import clean_sample, two_photon_like
from napari_noise2score.api import make_config
from napari_noise2score.core.anscombe import gat_forward, gat_inverse
from napari_noise2score.core.errors import Noise2ScoreError
from napari_noise2score.core.inference import denoise_array
from napari_noise2score.core.tiling import TiledDenoiser
from napari_noise2score.core.training import NoiseEstimated, iter_training

GAIN, READ, OFFSET = 8.5, 11.0, 22.0
FAST = dict(max_seconds=None, max_steps=300, device="cpu", decorrelate=1)


def psnr(clean: np.ndarray, x: np.ndarray) -> float:
    x = np.clip(np.asarray(x, np.float64), 0, 255)
    return float(10 * np.log10(255.0**2 / np.mean((x - clean) ** 2)))


@pytest.mark.parametrize("photons", [0.5, 2.0, 5.0, 20.0, 100.0])
def test_gat_stabilises_the_variance_and_its_inverse_is_unbiased(photons):
    rng = np.random.default_rng(0)
    n = 200_000
    y = GAIN * rng.poisson(photons, n) + OFFSET + READ * rng.standard_normal(n)
    f = gat_forward(y, GAIN, READ, OFFSET)
    assert f.std() == pytest.approx(1.0, abs=0.08)
    # the exact unbiased inverse maps E[f] back to the intensity, not f^-1(E[f])
    counts = (gat_inverse(f.mean(), GAIN, READ, OFFSET) - OFFSET) / GAIN
    assert counts == pytest.approx(photons, abs=0.03 + 0.02 * photons)


def test_gat_round_trip_and_edges():
    y = np.linspace(OFFSET + 5 * GAIN, 255.0, 50)
    back = gat_inverse(gat_forward(y, GAIN, READ, OFFSET), GAIN, READ, OFFSET)
    # noise-free values come back a quarter count high: the inverse corrects E[f], whose
    # square lies below (z + 3/8 + s^2) by about 1/4 count
    np.testing.assert_allclose((back - y) / GAIN, 0.25, atol=0.05)
    dark = gat_inverse(np.array([-1.0, 0.0, 0.5, np.inf]), GAIN, READ, OFFSET)
    assert np.all(dark[:3] == OFFSET) and dark[3] == np.inf  # clamped, never NaN
    with pytest.raises(Noise2ScoreError, match="gain"):
        gat_forward(y, 0.0, READ)


@pytest.fixture(scope="module")
def capture():
    """Two 128 x 128 two-photon-like 8-bit frames and their expected values: up to 60
    photons of a photomultiplier's spread amplitude (exponential, mean 4.25 grey levels: an
    effective gain of 8.5, the variance per mean), read noise 11, offset 22, clipped at 0
    and 255."""
    return two_photon_like(clean_sample((2, 128, 128), seed=0), photons=60.0, gain=4.25,
                           spread=1.0, seed=3)


@pytest.fixture(scope="module")
def anscombe_model(capture):
    noisy, _ = capture
    updates = list(iter_training(noisy, make_config(noise="auto", **FAST)))
    assert isinstance(updates[0], NoiseEstimated) and "Anscombe" in updates[0].route
    return updates[-1].model


def test_auto_on_a_two_photon_capture_gains_6_db(capture, anscombe_model):
    """The photon-count route (the default before) gains 5.9 dB here (6.0 without keeping
    saturated readings); the Anscombe route 8.3 dB (development runs)."""
    noisy, clean = capture
    assert anscombe_model.config.transform == "anscombe"
    result = psnr(clean, denoise(noisy, anscombe_model))
    assert result > psnr(clean, noisy) + 6.0
    counts = train(noisy, noise="auto", transform="none", **FAST)
    assert result > psnr(clean, denoise(noisy, counts)) + 1.0


def test_save_load_gives_identical_output_and_tiles_match(capture, anscombe_model, tmp_path):
    noisy, _ = capture
    whole = denoise(noisy, anscombe_model)
    loaded = load_model(anscombe_model.save(tmp_path / "m.n2s"), "cpu")
    assert loaded.config.transform == "anscombe"
    np.testing.assert_array_equal(denoise(noisy, loaded), whole)
    tiled = denoise_array(anscombe_model, noisy, tile=48)
    np.testing.assert_allclose(tiled, whole, atol=1e-3)
    lazy = TiledDenoiser(anscombe_model, noisy.shape, tile=40).as_dask(noisy).compute()
    np.testing.assert_allclose(lazy, whole, atol=1e-3)


def test_an_anscombe_model_refuses_other_noise_parameters(anscombe_model):
    with pytest.raises(Noise2ScoreError, match="read noise"):
        anscombe_model.noise_params(sigma=anscombe_model.config.sigma * 2)
    with pytest.raises(Noise2ScoreError, match="Anscombe"):
        make_config(noise="gaussian", sigma=1.0, transform="anscombe")


def test_clipping_at_0_and_255_and_an_empty_background():
    """Offset 5 under read noise 11: a third of the empty background clips at 0; the
    brightest cells (40 photons) saturate at 255."""
    clean = clean_sample((2, 128, 128), seed=1) - 8.0  # background 0 photons
    noisy, expected = two_photon_like(clean, photons=40.0, offset=5.0, seed=4)
    assert (noisy == 0).mean() > 0.1 and (noisy == 255).any()
    model = train(noisy, noise="auto", **FAST)
    assert model.config.transform == "anscombe"
    out = denoise(noisy, model)
    assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 255
    assert psnr(expected, out) > psnr(expected, noisy) + 6.0
    background = clean == 0
    assert abs(float(np.mean(out[background] - expected[background]))) < 1.0


def test_transformed_variance_and_the_dither_that_completes_it():
    """After the transform the noise variance is 1 from a few photons up, far less at zero
    photons with little read noise; the dither's std makes up the difference."""
    from napari_noise2score.core import dither

    v = dither.transformed_variance(np.array([0.0, 0.5, 2.0, 11.0]), 0.02)
    assert v[0] < 0.01 and 0.3 < v[1] < 0.6 and 0.85 < v[2] < 1.0 and abs(v[3] - 1) < 0.01
    dark = gat_forward(np.full((32, 32), 4.0), 21.0, 0.4, 4.0)  # a photomultiplier's dark level
    bright = gat_forward(np.full((32, 32), 4.0 + 21.0 * 30), 21.0, 0.4, 4.0)
    assert np.all(dither.deficit_std(dark, 21.0, 0.4) > 0.95)
    assert np.all(dither.deficit_std(bright, 21.0, 0.4) == 0)
    noisy, _ = two_photon_like(clean_sample((1, 64, 64), seed=0), seed=1)  # read noise 11
    planes = dither.with_dither([gat_forward(noisy[0], GAIN, READ, OFFSET)], [(GAIN, READ)], 1.0)
    assert planes[0].ndim == 2  # no dither needed: no second channel


@pytest.fixture(scope="module")
def photomultiplier():
    """A photomultiplier-like 8-bit confocal capture: a few photons per pixel at most, each
    a broad amplitude (Gamma, mean 21 grey levels: 31.5 grey levels of variance per mean), no
    read noise to speak of, dark level 4: over half the pixels sit exactly at it."""
    clean = clean_sample((1, 192, 192), seed=2) - 8.0
    noisy, expected = two_photon_like(clean, photons=12.0, gain=21.0, read=0.4, offset=4.0,
                                      spread=2.0, seed=5)
    assert np.mean(noisy == 4) > 0.5
    return noisy, expected


def test_training_on_a_dark_point_mass_does_not_collapse(photomultiplier, monkeypatch):
    """Without the dither, fine-tuning the prior on such a capture loses dB against the prior
    itself (the score learns the point mass); with it, it does not."""
    from napari_noise2score.core import dither

    noisy, expected = photomultiplier
    options = dict(noise="poisson-gaussian", gain=31.5, sigma=0.4, offset=4.0, device="cpu",
                   max_seconds=None, tta=False)
    start = train(noisy, max_steps=1, **options)
    assert start.config.transform == "anscombe" and start.config.network == "conditioned"
    prior = psnr(expected, denoise(noisy, start))
    result = psnr(expected, denoise(noisy, train(noisy, max_steps=60, **options)))
    assert result > psnr(expected, noisy) + 3.0 and result > prior - 0.3
    monkeypatch.setattr(dither, "ENABLED", False)
    undithered = psnr(expected, denoise(noisy, train(noisy, max_steps=60, **options)))
    assert undithered < result - 1.0
