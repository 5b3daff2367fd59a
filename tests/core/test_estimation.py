"""Noise estimation from noisy data alone, and training with noise="auto"."""

import numpy as np
import pytest
from scipy.ndimage import convolve

from helpers import psnr, smooth_image
from napari_noise2score import estimate_noise, train
from napari_noise2score._sample_data import two_photon_like
from napari_noise2score.core.errors import Noise2ScoreError
from napari_noise2score.core.estimation import saturation_level


@pytest.fixture(scope="module")
def fluorescence():
    """Smooth objects on a dark (zero-signal) background, 4 planes of 256 x 256."""
    planes = []
    for s in range(4):
        img = smooth_image(256, s)
        img = np.where(img > 0.35, img, 0.0)  # empty background, as in fluorescence
        planes.append(img * 400)
    return np.stack(planes)


def poisson_gaussian(x, gain, sigma, offset, seed=0):
    rng = np.random.default_rng(seed)
    return gain * rng.poisson(x / gain) + offset + sigma * rng.standard_normal(x.shape)


@pytest.mark.parametrize(
    "gain, sigma, offset",
    [(2.0, 3.0, 0.0), (5.0, 4.0, 100.0), (0.5, 6.0, 10.0), (10.0, 2.0, 50.0)],
)
def test_poisson_gaussian_parameters_are_recovered(fluorescence, gain, sigma, offset):
    est = estimate_noise(poisson_gaussian(fluorescence, gain, sigma, offset))
    assert est.model == "poisson-gaussian"
    assert est.gain == pytest.approx(gain, rel=0.12)
    # the dark level and the read noise are told apart by the empty background
    assert est.offset == pytest.approx(offset, abs=0.25 * sigma + 0.05 * gain)
    assert est.sigma == pytest.approx(sigma, rel=0.3)
    assert est.quality > 0.8 and est.correlation < 0.1


@pytest.mark.parametrize("photons", [24.0, 30.0])
def test_saturated_two_photon_captures_keep_their_variance_function(photons):
    """8-bit two-photon-like captures whose bright objects clip at 255 (2 % / 8 % of the
    pixels): windows holding a clipped pixel are left out, so the variance function is the
    camera's up to the bright end (before: gain 6.7 against 8.5 at 24 photons, variance
    15 % low at grey level 200; at 30 photons the fit fell back to Gaussian noise)."""
    planes = [two_photon_like(smooth_image(256, s), photons=photons, seed=s)[0]
              for s in range(4)]
    est = estimate_noise(np.stack(planes))
    assert est.model == "poisson-gaussian"
    assert est.gain == pytest.approx(8.5, rel=0.12)
    for level in (60.0, 128.0, 200.0):
        true = 8.5 * (level - 22.0) + 11.0**2
        assert est.gain * (level - est.offset) + est.sigma**2 == pytest.approx(true, rel=0.1)


def test_a_saturation_level_needs_many_pixels_on_the_maximum():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (128, 128))
    assert saturation_level([image]) is None  # a unique maximum is no clipping
    clipped = np.minimum(image, 110).astype(np.uint8)
    assert saturation_level([clipped]) == 110


@pytest.mark.parametrize("sigma", [5.0, 25.0])
def test_gaussian_sigma_is_recovered(sigma):
    clean = np.stack([smooth_image(256, s) for s in range(3)]) * 255
    noisy = clean + np.random.default_rng(1).normal(0, sigma, clean.shape)
    est = estimate_noise(noisy)
    assert est.model == "gaussian" and est.sigma == pytest.approx(sigma, rel=0.05)


def test_gamma_shape_is_recovered():
    clean = np.stack([smooth_image(256, s) for s in range(3)])
    noisy = clean * np.random.default_rng(2).gamma(50.0, 1 / 50.0, clean.shape)
    est = estimate_noise(noisy)
    assert est.model == "gamma" and est.shape == pytest.approx(50.0, rel=0.15)


def test_correlated_noise_is_detected(fluorescence):
    rng = np.random.default_rng(3)
    kernel = np.array([[0, 0.5, 0], [0.5, 1, 0.5], [0, 0.5, 0]])
    white = rng.standard_normal(fluorescence.shape)
    corr = np.stack([convolve(p, kernel, mode="wrap") for p in white])
    corr /= corr.std()
    rho = np.corrcoef(corr[0, :, :-1].ravel(), corr[0, :, 1:].ravel())[0, 1]
    noisy = fluorescence + 8.0 * corr
    est = estimate_noise(noisy)
    white_est = estimate_noise(fluorescence + 8.0 * white)
    assert rho > 0.45  # the test noise is strongly correlated...
    assert est.correlation > 0.25  # ...which the estimate reports,
    assert white_est.correlation < 0.08  # and white noise is not flagged


def test_too_little_structure_is_a_clear_error():
    with pytest.raises(Noise2ScoreError, match="too small"):
        estimate_noise(np.random.default_rng(0).random((12, 12)))
    edges = np.tile(np.repeat([0.0, 200.0], 2), (64, 16))  # stripes, no flat region
    with pytest.raises(Noise2ScoreError, match="give the noise parameters yourself"):
        estimate_noise(edges)


def test_auto_noise_trains_and_denoises(fluorescence):
    from napari_noise2score import denoise

    clean = fluorescence[:2, :128, :128]
    noisy = poisson_gaussian(clean, 4.0, 2.0, 20.0, seed=4).astype(np.float32)
    updates = []
    model = train(noisy, noise="auto", max_seconds=None, max_steps=250, patch_size=48,
                  batch_size=8, device="cpu", on_progress=updates.append)
    assert model.config.noise == "poisson-gaussian"
    assert model.config.gain == pytest.approx(4.0, rel=0.2)
    assert model.config.offset == pytest.approx(20.0, abs=2.0)
    out = denoise(noisy, model)
    peak = float(clean.max())
    # a short training; dark, nearly empty backgrounds are the hardest case (docs/algorithm.md)
    assert psnr(clean + 20.0, out, peak) > psnr(clean + 20.0, noisy, peak) + 0.4
