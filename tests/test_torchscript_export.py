"""The TorchScript denoiser equals the plugin's own denoising, for every noise model and
mixed mode, and refuses the configurations it does not reproduce."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from napari_noise2score.core.config import TrainConfig
from napari_noise2score.core.errors import ExportError
from napari_noise2score.core.inference import denoise_array
from napari_noise2score.core.model import Noise2ScoreModel, build_network
from napari_noise2score.core.noise import MIXED_MODES
from napari_noise2score.export.torchscript import check_exportable, script_denoiser

NOISES = [dict(noise="gaussian", sigma=10.0), dict(noise="gamma", shape=5.0),
          dict(noise="poisson", gain=2.0),
          *(dict(noise="poisson-gaussian", gain=2.0, sigma=3.0, mixed_mode=m)
            for m in MIXED_MODES)]


def perturbed_model(seed: int = 0, **options) -> Noise2ScoreModel:
    """A tiny untrained network with random non-zero weights (so the score is not 0)."""
    torch.manual_seed(seed)
    config = TrainConfig(width=8, depth=2, unshuffle=2, offset=5.0, **options).validate()
    net = build_network(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return Noise2ScoreModel(config, net.eval(), scale=200.0, final_sigma_a=0.4)


def run(scripted: torch.jit.ScriptModule, planes: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return scripted(torch.from_numpy(planes[:, None])).numpy()[:, 0]


@pytest.mark.parametrize("decorrelate", [1, 2])
@pytest.mark.parametrize("noise", NOISES, ids=lambda n: n.get("mixed_mode", n["noise"]))
def test_module_equals_plugin_denoise(noise, decorrelate):
    model = perturbed_model(decorrelate=decorrelate, tta=False, **noise)
    rng = np.random.default_rng(1)
    planes = (100 + 50 * rng.random((2, 70, 53))).astype(np.float32)  # not multiples
    expected = denoise_array(model, planes)
    got = run(script_denoiser(model), planes)
    assert np.abs(expected - planes).max() > 1.0  # the denoiser does change the image
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_module_with_tta_equals_plugin_tta():
    model = perturbed_model(noise="poisson-gaussian", gain=2.0, sigma=3.0, tta=True)
    plane = (80 + 40 * np.random.default_rng(2).random((1, 40, 48))).astype(np.float32)
    expected = denoise_array(model, plane)
    one_pass = denoise_array(model.with_options(tta=False), plane)
    assert np.abs(expected - one_pass).max() > 1e-3  # the average is a different result
    np.testing.assert_allclose(run(script_denoiser(model, tta=True), plane), expected,
                               rtol=1e-5, atol=1e-4)


def test_small_planes_follow_the_plugin():
    """Below the network's multiple the padding replicates, and the local-mean filter's
    reflection wraps several times: both as the plugin does."""
    model = perturbed_model(noise="gaussian", sigma=10.0, tta=False)
    plane = (100 + 50 * np.random.default_rng(3).random((1, 5, 9))).astype(np.float32)
    np.testing.assert_allclose(run(script_denoiser(model), plane),
                               denoise_array(model, plane), rtol=1e-5, atol=1e-4)


@dataclass
class _FutureConfig(TrainConfig):
    future_option: str = "none"


def test_unknown_option_with_a_non_default_value_is_refused_in_one_line():
    check_exportable(_FutureConfig(noise="gaussian", sigma=1.0, width=8, depth=2,
                                   unshuffle=2))  # the default is reproduced
    with pytest.raises(ExportError, match=r"does not reproduce future_option='x'") as err:
        check_exportable(_FutureConfig(noise="gaussian", sigma=1.0, width=8, depth=2,
                                       unshuffle=2, future_option="x"))
    assert "\n" not in str(err.value)


def test_anscombe_route_is_refused_in_one_line():
    with pytest.raises(ExportError, match="Anscombe route") as err:
        check_exportable(TrainConfig(noise="poisson-gaussian", gain=2.0, sigma=3.0, width=8,
                                     depth=2, unshuffle=2, transform="anscombe"))
    assert "\n" not in str(err.value)


def test_unresolved_noise_model_is_refused():
    with pytest.raises(ExportError, match="only a trained model"):
        check_exportable(TrainConfig(width=8, depth=2, unshuffle=2))
