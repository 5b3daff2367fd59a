"""Details of real camera data: 8-bit clipping, saturation, mostly empty backgrounds,
values below the offset, and images the noise estimate cannot read."""

import numpy as np
import pytest

from helpers import range_psnr
from napari_noise2score import denoise, train
from napari_noise2score._sample_data import clean_sample
from napari_noise2score.core.errors import Noise2ScoreError
from napari_noise2score.core.estimation import estimate_noise
from napari_noise2score.core.training import NoiseEstimated, iter_training


@pytest.fixture(scope="module")
def camera_8bit():
    """Sparse cells on an empty background (offset 2), gain 3, read noise 1.5, stored as
    uint8: negative excursions clip at 0 and the brightest nuclei saturate at 255."""
    clean = clean_sample((2, 160, 160)) - 8.0  # background 0: mostly empty
    clean = clean * (300.0 / clean.max())
    rng = np.random.default_rng(2)
    raw = 2.0 + 3.0 * rng.poisson(clean / 3.0) + 1.5 * rng.standard_normal(clean.shape)
    noisy = np.clip(np.round(raw), 0, 255).astype(np.uint8)
    return clean + 2.0, noisy


def test_clipped_saturated_8bit_data_trains_and_denoises(camera_8bit):
    clean, noisy = camera_8bit
    saturated = noisy == 255
    assert saturated.any() and (noisy == 0).any() and (clean < 3).mean() > 0.5
    model = train(noisy, noise="auto", max_seconds=None, max_steps=250, device="cpu")
    assert model.config.noise == "poisson-gaussian"
    out = denoise(noisy, model)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    # within the 8-bit range the capture was clipped to; saturated pixels stay bright: none
    # pulled below 200, or below its true value where noise lifted a dimmer one to 255
    bright = np.minimum(200.0, clean[saturated])
    assert out.min() >= 0 and out.max() <= 255 and np.all(out[saturated] > bright)
    ok = ~saturated & (clean < 255)
    assert range_psnr(clean, out, ok) > range_psnr(clean, noisy, ok) + 2.0
    # the empty background stays dark: no lift of a fraction of a count
    background = clean < 2.5
    assert abs(float(np.mean(out[background] - clean[background]))) < 0.5


def test_an_image_too_structured_to_estimate_falls_back_to_a_stated_gaussian():
    stripes = np.tile(np.repeat([0.0, 200.0], 2), (64, 16))
    stripes = stripes + np.random.default_rng(0).normal(0, 5.0, stripes.shape)
    with pytest.raises(Noise2ScoreError, match="give the noise parameters yourself"):
        estimate_noise(stripes)
    est = estimate_noise(stripes, fallback=True)
    assert est.model == "gaussian" and est.quality == 0.0
    assert est.sigma == pytest.approx(5.0, rel=0.25)
    assert "fallback" in est.describe() and "override" in est.describe()
    updates = list(iter_training(stripes.astype(np.float32), _config()))
    first = updates[0]
    assert isinstance(first, NoiseEstimated) and "fallback" in first.estimate.note


def _config():
    from napari_noise2score.core.config import TrainConfig

    return TrainConfig(noise="auto", max_seconds=None, max_steps=3, device="cpu")
