"""Mixed Poisson-Gaussian noise: every Tweedie mode denoises, the default is at least as good
as treating the noise as Gaussian; test-time augmentation keeps tiling exact."""

import numpy as np
import pytest
import torch

from helpers import range_psnr
from napari_noise2score import denoise, train
from napari_noise2score._sample_data import clean_sample
from napari_noise2score.core.config import TrainConfig
from napari_noise2score.core.inference import denoise_array, predict_plane
from napari_noise2score.core.network import ScoreUNet
from napari_noise2score.core.noise import MIXED_MODES, NoiseParams, simulate

GAIN, READ = 2.0, 3.0
FAST = dict(max_seconds=None, max_steps=250, device="cpu", decorrelate=1)
# the Tweedie modes act in photon counts: the count route (the Anscombe route has one step)
COUNTS = dict(transform="none", **FAST)


@pytest.fixture(scope="module")
def mixed_case():
    clean = clean_sample((3, 128, 128))
    noisy = simulate(clean, NoiseParams("poisson-gaussian", sigma=READ, gain=GAIN), seed=5)
    noisy = noisy.astype(np.float32)
    model = train(noisy, noise="poisson-gaussian", gain=GAIN, sigma=READ, **COUNTS)
    return clean, noisy, model


@pytest.mark.parametrize("mode", MIXED_MODES)
def test_every_mixed_mode_raises_psnr(mixed_case, mode):
    clean, noisy, model = mixed_case
    model = model.with_options(mixed_mode=mode)
    assert range_psnr(clean, denoise(noisy, model)) > range_psnr(clean, noisy) + 3.0


def test_default_mode_is_at_least_as_good_as_the_gaussian_path(mixed_case):
    clean, noisy, model = mixed_case
    assert model.config.mixed_mode == TrainConfig().mixed_mode
    # the Gaussian path: one sigma for the whole image, the noise std at its mean intensity
    sigma = float(np.sqrt(GAIN * clean.mean() + READ**2))
    # (from scratch, like the mixed model: the pretrained prior is another comparison)
    gaussian = train(noisy, noise="gaussian", sigma=sigma, init="scratch", **FAST)
    plain = {"wiener": False}  # the Tweedie steps compared, without the Wiener step
    assert (range_psnr(clean, denoise(noisy, model.with_options(**plain)))
            >= range_psnr(clean, denoise(noisy, gaussian.with_options(**plain))) - 0.05)


@pytest.fixture(scope="module")
def random_net():
    torch.manual_seed(0)
    net = ScoreUNet(width=8, depth=2, unshuffle=2).eval()
    torch.nn.init.normal_(net.tail.weight, std=0.1)
    return net


def test_test_time_augmentation_is_equivariant_and_tiles_exactly(random_net):
    rng = np.random.default_rng(1)
    plane = rng.random((64, 96)).astype(np.float32)  # multiples of the network's 8
    out = predict_plane(random_net, plane, tta=True)
    flipped = predict_plane(random_net, np.ascontiguousarray(plane[::-1].T), tta=True)
    np.testing.assert_allclose(flipped, out[::-1].T, atol=1e-5)
    plain = predict_plane(random_net, plane)
    assert np.abs(plain - out).max() > 1e-3  # it does average different outputs
    odd = rng.random((203, 157)).astype(np.float32)
    whole = predict_plane(random_net, odd, tile=4096, overlap=0, tta=True)
    tiled = predict_plane(random_net, odd, tile=48, overlap=96, tta=True)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_test_time_augmentation_denoises_at_least_as_well(mixed_case):
    clean, noisy, model = mixed_case
    assert model.config.tta is None  # the default: auto, the average for small inputs
    plain = range_psnr(clean, denoise_array(model.with_options(tta=False), noisy))
    assert range_psnr(clean, denoise_array(model, noisy)) >= plain - 0.05
