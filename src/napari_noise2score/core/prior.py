"""The pretrained score prior: one noise-conditioned network for Gaussian noise of any std.

The network (``ConditionedUNet``) takes the perturbed image z (scaled intensities, data in
about [0, 1]) and, as a second channel, the map of the total noise std tau of z; it returns
a residual tau * o, so the score is o / tau. Trained with AR-DAE at many (noise std,
perturbation) pairs, it learns the score of the clean-image density smoothed at level tau
for every tau in its range: a noise-conditional score. The optimum depends on tau only, not
on how tau splits into data noise and perturbation, so at denoising the network is queried
at tau = the data's noise std itself (no perturbation bias: ``final_sigma_a = 0``).

After the generalized-Anscombe route, every regime the prior serves is Gaussian noise of a
known std in the network's domain; until then it serves Gaussian noise only and refuses the
rest with one line (``PriorRangeError``).

Two files of the same network ship, one per route (``PRIOR_FILES``): Gaussian noise is
denoised with one, Poisson-type noise after the transform with the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import planewise
from .config import AUTO, TrainConfig
from .errors import ModelFileError, Noise2ScoreError
from .estimation import estimate_noise
from .model import Noise2ScoreModel, package_version
from .network import COND_REF as COND_REF  # the noise channel's unit, also here
from .network import ConditionedUNet
from .noise import GAUSSIAN, NOISE_TYPES, model_for, noise_model
from .stack import intensity_scale

PRIOR_FORMAT = "napari-noise2score-prior"
WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
#: The routes the shipped priors serve: Gaussian noise as it is, and Poisson-type noise as
#: Gaussian noise of std 1 after the generalized Anscombe transform.
GAUSSIAN_ROUTE, ANSCOMBE_ROUTE = "gaussian", "anscombe"
#: One shipped prior per route, by measurement (docs/algorithm.md, "One prior per route"
#: and "Stop 23"): the same network and start; the Gaussian one pre-trained further with a
#: decaying learning rate (it fits exact Gaussian noise better and the transformed real
#: noise worse), the Anscombe one by denoising score matching on fluorescence content as
#: synthetic low-photon captures after the transform.
PRIOR_FILES = {GAUSSIAN_ROUTE: WEIGHTS / "prior_gaussian.pt",
               ANSCOMBE_ROUTE: WEIGHTS / "prior_anscombe.pt"}
#: The network of the shipped prior (the project's CPU network plus the noise channel).
PRIOR_ARCH = {"width": 24, "depth": 3, "unshuffle": 2}
#: Noise std the prior serves, in scaled intensities (8-bit data: sigma 5 to 75 grey levels).
TAU_RANGE = (5.0 / 255.0, 75.0 / 255.0)
#: Perturbation std over data noise std, sampled uniformly at pre-training and fine-tuning.
RATIO_RANGE = (0.25, 1.0)
#: The prior's domain on the Anscombe route: the transformed planes' intensity scale times
#: this maps to 1, i.e. the brightest transformed values sit at about 1 / ANSCOMBE_SCALE
#: (less where the noise std, 1 / the domain's scale, would leave the prior's range).
#: Measured on all low-photon development images, zero-shot (docs/algorithm.md, "The
#: Anscombe route's scale"): the network's output gains 0.3-2.5 dB at 0.7 over 1.0.
ANSCOMBE_SCALE = 0.7
#: The name that stands for the shipped prior wherever a model file is asked for.
PRETRAINED = "pretrained"
#: How a refusal ends (dropped where training falls back to scratch by itself).
HINT = ": train a model from scratch instead (init=scratch)"
#: The noise model the prior's network is trained for (Poisson-type noise comes to it as
#: Gaussian noise after the Anscombe transform).
NOISE = GAUSSIAN.name


class PriorRangeError(Noise2ScoreError):
    """Noise the pretrained prior was not trained for."""


def conditioned_loss(net: ConditionedUNet, y: torch.Tensor, s: torch.Tensor, ratio: torch.Tensor,
                     u: torch.Tensor) -> torch.Tensor:
    """AR-DAE loss of a noise-conditioned network on noisy ``y`` (noise std ``s`` per item)
    perturbed by ``ratio * s * u``: mean of (u + sigma_a * score(z))^2, score = r / tau^2."""
    s = s.reshape(-1, 1, 1, 1)
    sa = ratio.reshape(-1, 1, 1, 1) * s
    tau = torch.sqrt(s * s + sa * sa)
    z = y + sa * u
    if z.device.type == "cpu":
        z = z.contiguous(memory_format=torch.channels_last)
    net.set_tau(tau)
    score = net(z) / (tau * tau)
    return (u + sa * score).square().mean()


def conditioned_dsm_loss(net: ConditionedUNet, y: torch.Tensor, s: torch.Tensor,
                         x: torch.Tensor) -> torch.Tensor:
    """Denoising score matching of a noise-conditioned network on noisy ``y`` (noise std
    ``s`` per item) against the clean ``x``: mean of ((y + r - x) / s)^2, the residual r
    being s^2 times the score (Tweedie's formula at tau = s)."""
    s = s.reshape(-1, 1, 1, 1)
    z = y.contiguous(memory_format=torch.channels_last) if y.device.type == "cpu" else y
    net.set_tau(s)
    return ((z + net(z) - x) / s).square().mean()


def check_noise_std(tau: float, what: str = "the noise std") -> float:
    """``tau`` (scaled intensities) if the prior serves it, else one clear PriorRangeError."""
    lo, hi = TAU_RANGE
    if not (math.isfinite(tau) and lo * 0.999 <= tau <= hi * 1.001):
        raise PriorRangeError(
            f"{what} is {tau * 255:.3g} / 255 of the intensity scale, outside the prior's "
            f"range ({lo * 255:g} to {hi * 255:g} / 255){HINT}")
    return tau


def check_noise_model(noise: str, anscombe: bool = False) -> None:
    """Refuse, in one line, any noise model the prior does not serve (Poisson-type noise is
    served on the Anscombe route: Gaussian noise of std 1 after the transform)."""
    if NOISE_TYPES.get(noise) is not GAUSSIAN and not anscombe:
        raise PriorRangeError(f"{noise} noise is outside the prior's range (Gaussian noise "
                              f"only){HINT}")


def check_independent(stride: int) -> None:
    """Refuse, in one line, correlated noise (a decorrelating stride above 1)."""
    if stride > 1:
        raise PriorRangeError("correlated noise is outside the prior's range (independent "
                              f"noise only){HINT}")


@dataclass
class Prior:
    """The prior's weights and their provenance (data, steps, seconds, commit, validation)."""

    state_dict: dict[str, torch.Tensor]
    arch: dict[str, int]
    provenance: dict[str, Any]

    def network(self) -> ConditionedUNet:
        net = ConditionedUNet(**self.arch)
        net.load_state_dict(self.state_dict)
        return net.eval()

    @property
    def history(self) -> tuple[int, float]:
        """The pre-training's steps and seconds."""
        return int(self.provenance.get("steps", 0)), float(self.provenance.get("seconds", 0.0))


def _arch(net: ConditionedUNet) -> dict[str, int]:
    return {"width": net.head[0].out_channels, "depth": net.depth, "unshuffle": net.unshuffle}


def _model(config: TrainConfig, net: ConditionedUNet, scale: float, steps: int,
           seconds: float) -> Noise2ScoreModel:
    """A model on the prior's network, queried at the data's noise std (no perturbation)."""
    return Noise2ScoreModel(config=config, net=net, scale=float(scale), final_sigma_a=0.0,
                            steps=steps, seconds=seconds, version=package_version())


def save_prior(path: str | Path, net: ConditionedUNet, provenance: dict[str, Any]) -> Path:
    """Write the prior's weights (float32, CPU) with their provenance."""
    path = Path(path)
    payload = {"format": PRIOR_FORMAT, "format_version": 1, "arch": _arch(net),
               "tau_range": list(TAU_RANGE), "provenance": provenance,
               "state_dict": {k: v.detach().cpu().float() for k, v in net.state_dict().items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_prior(path: str | Path | None = None, route: str = ANSCOMBE_ROUTE) -> Prior:
    """Read the shipped prior of ``route`` (or a prior file written by ``save_prior``),
    offline."""
    path = Path(path) if path is not None else PRIOR_FILES[route]
    if not path.is_file():
        raise ModelFileError(f"the pretrained prior is missing from the installation ({path})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != PRIOR_FORMAT:
            raise ValueError("not a prior file")
        prior = Prior(payload["state_dict"], dict(payload["arch"]), dict(payload["provenance"]))
        prior.network()  # the weights fit the network
    except Exception as exc:
        raise ModelFileError(f"{path} is not a readable prior file: {exc}") from None
    return prior


def prior_available() -> bool:
    return all(path.is_file() for path in PRIOR_FILES.values())


def psnr(clean: np.ndarray, estimate: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((clean.astype(np.float64) - estimate.astype(np.float64)) ** 2))
    return 10 * math.log10(peak * peak / mse)


def prior_config(sigma: float, scale: float, arch: dict[str, int] | None = None, **options):
    """The TrainConfig of a model built on the prior's network for Gaussian noise ``sigma``
    (input units) on data of intensity ``scale``; refuses noise outside the prior's range."""
    check_noise_std(sigma / scale)
    arch = arch or PRIOR_ARCH
    values = {"noise": NOISE, "sigma": float(sigma), "network": "conditioned",
              "init": "pretrained", "decorrelate": 1, **arch, **options}
    return TrainConfig(**values)


def model_from_net(net: ConditionedUNet, sigma: float, scale: float, steps: int = 0,
                   seconds: float = 0.0, **options):
    """A Noise2ScoreModel denoising Gaussian noise ``sigma`` (input units) with ``net``."""
    config = prior_config(sigma, scale, _arch(net), **options)
    return _model(config, net, scale, steps, seconds).to(next(net.parameters()).device)


def pretrained_model(sigma: float, scale: float = 255.0, device: str = "cpu", **options):
    """The shipped prior as a ready model for Gaussian noise ``sigma`` on data of ``scale``."""
    prior = load_prior(route=GAUSSIAN_ROUTE)
    return model_from_net(prior.network().to(device), sigma, scale, *prior.history, **options)


def anscombe_model(config, scale: float, net: ConditionedUNet | None = None, steps: int = 0,
                   seconds: float = 0.0):
    """The prior (the shipped one, or ``net`` with its ``steps`` and ``seconds``) as a ready
    model for the Anscombe route of ``config`` (Poisson-type noise; Gaussian noise of std 1
    after the transform, ``scale`` the transformed planes' intensity scale, of which the
    network's domain takes ``ANSCOMBE_SCALE``)."""
    scale = max(scale * ANSCOMBE_SCALE, min(scale, 1.0 / TAU_RANGE[1]))  # within the range
    check_noise_std(1.0 / scale, "the noise std after the Anscombe transform")
    if net is None:
        prior = load_prior(route=ANSCOMBE_ROUTE)
        net, (steps, seconds) = prior.network(), prior.history
    cfg = replace(config, network="conditioned", init=PRETRAINED, decorrelate=1, **_arch(net))
    return _model(cfg, net, scale, steps, seconds)


def unbound_model(device: str = "cpu"):
    """The shipped prior as a model whose noise is not known yet (``noise="auto"``): bind it
    to the data with ``bind`` before denoising, which takes the prior of the noise's route
    (this model's network carries the size, pre-training history and device only)."""
    prior = load_prior(route=ANSCOMBE_ROUTE)
    config = TrainConfig(noise=AUTO, network="conditioned", init=PRETRAINED, decorrelate=1,
                         **prior.arch)
    return _model(config, prior.network(), 1.0, *prior.history).to(device)


def is_unbound(model) -> bool:
    return model.conditioned and model.config.noise == AUTO


def _route_net(model, route: str) -> tuple[ConditionedUNet, int, float]:
    """The shipped prior of ``route``: its network on ``model``'s device, steps, seconds."""
    prior = load_prior(route=route)
    return prior.network().to(next(model.net.parameters()).device), *prior.history


def bind(model, planes, sigma: float | None = None, gain: float | None = None,
         shape: float | None = None, offset: float = 0.0):
    """The unbound prior ``model`` ready for the data ``planes`` (a sample of 2D planes):
    the shipped prior of the route, for Gaussian noise ``sigma``, or Poisson-type noise of
    ``gain`` (read noise ``sigma``) on the Anscombe route (input units; estimated from the
    planes when neither is given), at the planes' intensity scale, on ``model``'s device and
    with its options. Returns (model, a line saying what noise it denoises)."""
    if shape is not None:
        check_noise_model(model_for(shape=shape))
    how, noise = "given", None
    if gain is not None:
        read = float(sigma) if sigma else None
        noise = {"noise": model_for(sigma=read, gain=gain), "gain": float(gain),
                 "sigma": read, "offset": float(offset)}
    elif sigma is None:
        estimate = estimate_noise([np.asarray(p)[None] for p in planes])
        check_independent(estimate.stride)
        kind = noise_model(estimate.model)
        check_noise_model(estimate.model, anscombe=kind.counts)
        how = "estimated"
        if kind is GAUSSIAN:
            sigma = float(estimate.sigma)
        else:
            noise = {"noise": estimate.model, "gain": float(estimate.gain),
                     "sigma": estimate.sigma, "offset": float(estimate.offset)}
    options = {"tta": model.config.tta, "mixed_mode": model.config.mixed_mode}
    if noise is not None:
        config = TrainConfig(**noise, transform="anscombe", per_plane_noise=how == "estimated",
                             **options)
        scale = planewise.transformed_scale(planewise.transformed_planes(config, planes)[0])
        bound = anscombe_model(config, scale, *_route_net(model, ANSCOMBE_ROUTE))
        read = f", read noise {noise['sigma']:.4g}" if noise["sigma"] else ""
        return bound, (f"pretrained prior: {noise['noise']} noise, gain {noise['gain']:.4g}"
                       f"{read}, offset {noise['offset']:.4g} ({how}; Anscombe route)")
    scale = intensity_scale(list(planes))
    net, steps, seconds = _route_net(model, GAUSSIAN_ROUTE)
    bound = model_from_net(net, sigma, scale, steps, seconds, **options)
    return bound, f"pretrained prior: Gaussian noise sigma = {sigma:.4g} ({how})"


def rebind(model, sigma: float | None):
    """A noise-conditioned ``model`` for another Gaussian ``sigma`` (None: unchanged)."""
    if (sigma is None or not model.conditioned or model.config.anscombe
            or sigma == model.config.sigma):
        return model
    check_noise_std(sigma / model.scale)
    return model.for_noise(sigma)
