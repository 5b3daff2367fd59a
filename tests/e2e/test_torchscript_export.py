"""The TorchScript denoiser equals the plugin's own denoising, for every noise model and
mixed mode, the Anscombe route and the noise-conditioned network, and refuses the
configurations it does not reproduce."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from helpers import NOISES, perturbed_model
from napari_noise2score.core.config import TrainConfig
from napari_noise2score.core.errors import ExportError
from napari_noise2score.core.inference import denoise_array
from napari_noise2score.export.torchscript import (
    AnscombeForward,
    InverseAnscombe,
    check_exportable,
    denoiser_spec,
    script_denoiser,
)

#: The routes default training now takes: the Anscombe route for Poisson-type noise, the
#: pretrained prior's noise-conditioned network for Gaussian noise (and both together).
ROUTES = [dict(noise="poisson-gaussian", gain=2.0, sigma=3.0, transform="anscombe"),
          dict(noise="poisson", gain=2.0, transform="anscombe"),
          dict(noise="gaussian", sigma=10.0, network="conditioned"),
          dict(noise="poisson-gaussian", gain=2.0, sigma=3.0, transform="anscombe",
               network="conditioned")]


def route_id(options: dict) -> str:
    return "-".join([options["noise"], *(v for k, v in options.items()
                                         if k in ("transform", "network"))])


def run(scripted: torch.jit.ScriptModule, planes: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return scripted(torch.from_numpy(planes[:, None])).numpy()[:, 0]


@pytest.mark.parametrize("decorrelate", [1, 2])
@pytest.mark.parametrize("noise", NOISES, ids=lambda n: n.get("mixed_mode", n["noise"]))
def test_module_equals_plugin_denoise(noise, decorrelate):
    model = perturbed_model(wiener=False, decorrelate=decorrelate, tta=False, **noise)
    rng = np.random.default_rng(1)
    planes = (100 + 50 * rng.random((2, 70, 53))).astype(np.float32)  # not multiples
    expected = denoise_array(model, planes)
    got = run(script_denoiser(model), planes)
    assert np.abs(expected - planes).max() > 1.0  # the denoiser does change the image
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("decorrelate", [1, 2])
@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_new_routes_equal_plugin_denoise(route, decorrelate):
    """Dark pixels included: below the offset the transform's square root is clipped at 0
    and the inverse clamps at D_MIN and at zero counts, as in the plugin."""
    model = perturbed_model(wiener=False, decorrelate=decorrelate, tta=False, **route)
    rng = np.random.default_rng(4)
    planes = (150 * rng.random((2, 70, 53)) ** 2).astype(np.float32)
    planes[:, :6, :8] = 0.0
    expected = denoise_array(model, planes)
    got = run(script_denoiser(model), planes)
    assert np.abs(expected - planes).max() > 1.0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_anscombe_pieces_equal_the_plugin_transform_and_inverse():
    from napari_noise2score.core.anscombe import D_MIN, gat_forward, gat_inverse

    gain, sigma, offset, scale = 2.5, 3.0, 7.0, 17.0
    y = np.linspace(-30.0, 400.0, 1001).astype(np.float32)
    forward = AnscombeForward(gain, sigma, offset, scale)(torch.from_numpy(y)).numpy()
    expected = gat_forward(y, gain, sigma, offset).astype(np.float32) / np.float32(scale)
    np.testing.assert_array_equal(forward, expected)
    d = np.linspace(0.0, 4.0, 1001).astype(np.float32)  # from below D_MIN / scale
    assert d.min() * scale < D_MIN
    back = torch.jit.script(InverseAnscombe(gain, sigma, offset, scale))(torch.from_numpy(d))
    expected = gat_inverse(d * np.float32(scale), gain, sigma, offset).astype(np.float32)
    np.testing.assert_allclose(back.numpy(), expected, rtol=1e-6, atol=1e-5)
    assert back.numpy().min() == np.float32(offset)  # zero counts at and below D_MIN


def test_conditioned_network_is_queried_at_the_models_noise_level():
    model = perturbed_model(wiener=False, noise="gaussian", sigma=10.0, network="conditioned",
                            tta=False)
    tau = float(model.net.tau)
    assert denoiser_spec(model)["tau"] == tau and tau == pytest.approx(
        np.hypot(10.0 / 200.0, 0.4))
    rebound = model.for_noise(20.0)  # the plugin's sigma override sets a new tau
    assert denoiser_spec(rebound)["tau"] == float(rebound.net.tau) != tau
    plane = (100 + 50 * np.random.default_rng(5).random((1, 40, 48))).astype(np.float32)
    np.testing.assert_allclose(run(script_denoiser(rebound), plane),
                               denoise_array(rebound, plane), rtol=1e-5, atol=1e-4)


def test_per_item_noise_levels_are_refused_in_one_line():
    model = perturbed_model(wiener=False, noise="gaussian", sigma=10.0, network="conditioned",
                            tta=False)
    model.net.set_tau(torch.tensor([0.1, 0.2]))
    with pytest.raises(ExportError, match="one noise level for all planes") as err:
        script_denoiser(model)
    assert "\n" not in str(err.value)


def test_module_with_tta_equals_plugin_tta():
    model = perturbed_model(wiener=False, noise="poisson-gaussian", gain=2.0, sigma=3.0, tta=True)
    plane = (80 + 40 * np.random.default_rng(2).random((1, 40, 48))).astype(np.float32)
    expected = denoise_array(model, plane)
    one_pass = denoise_array(model.with_options(tta=False), plane)
    assert np.abs(expected - one_pass).max() > 1e-3  # the average is a different result
    np.testing.assert_allclose(run(script_denoiser(model, tta=True), plane), expected,
                               rtol=1e-5, atol=1e-4)


def test_small_planes_follow_the_plugin():
    """Below the network's multiple the padding replicates, and the local-mean filter's
    reflection wraps several times: both as the plugin does."""
    model = perturbed_model(wiener=False, noise="gaussian", sigma=10.0, tta=False)
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


def test_conditioned_anscombe_module_with_tta_equals_plugin_tta():
    model = perturbed_model(wiener=False, noise="poisson-gaussian", gain=2.0, sigma=3.0, tta=True,
                            transform="anscombe", network="conditioned")
    plane = (150 * np.random.default_rng(7).random((1, 40, 48))).astype(np.float32)
    np.testing.assert_allclose(run(script_denoiser(model, tta=True), plane),
                               denoise_array(model, plane), rtol=1e-5, atol=1e-4)


def test_unresolved_noise_model_is_refused():
    with pytest.raises(ExportError, match="only a trained model"):
        check_exportable(TrainConfig(width=8, depth=2, unshuffle=2))


def test_the_bound_pretrained_prior_exports_and_the_unbound_one_is_refused():
    from napari_noise2score.core import prior

    if not prior.prior_available():
        pytest.skip("the pretrained prior is not installed")
    rng = np.random.default_rng(8)
    plane = (60 + 100 * rng.random((1, 48, 40)) + 15 * rng.standard_normal((1, 48, 40)))
    plane = plane.astype(np.float32)
    model, _ = prior.bind(prior.unbound_model(), list(plane), sigma=15.0)
    model = model.with_options(tta=False, wiener=False)
    np.testing.assert_allclose(run(script_denoiser(model), plane), denoise_array(model, plane),
                               rtol=1e-5, atol=1e-4)
    with pytest.raises(ExportError, match="only a trained model"):
        script_denoiser(prior.unbound_model())
