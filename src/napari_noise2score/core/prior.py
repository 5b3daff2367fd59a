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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ModelFileError, Noise2ScoreError
from .network import ScoreUNet
from .noise import GAUSSIAN, model_for

PRIOR_FORMAT = "napari-noise2score-prior"
PRIOR_FILE = Path(__file__).resolve().parent.parent / "weights" / "prior_gaussian.pt"
#: The network of the shipped prior (the project's CPU network plus the noise channel).
PRIOR_ARCH = {"width": 24, "depth": 3, "unshuffle": 2}
#: Noise std the prior serves, in scaled intensities (8-bit data: sigma 5 to 75 grey levels).
TAU_RANGE = (5.0 / 255.0, 75.0 / 255.0)
#: Perturbation std over data noise std, sampled uniformly at pre-training and fine-tuning.
RATIO_RANGE = (0.25, 1.0)
#: How a refusal ends (dropped where training falls back to scratch by itself).
HINT = ": train a model from scratch instead (--init scratch)"
#: The one noise model the prior serves.
NOISE = GAUSSIAN.name
#: The noise channel holds tau / COND_REF (values of order 1).
COND_REF = 0.1


class PriorRangeError(Noise2ScoreError):
    """Noise the pretrained prior was not trained for."""


class ConditionedUNet(ScoreUNet):
    """A ScoreUNet whose input gains a noise-level channel and whose residual is tau * output.

    ``tau`` (set with ``set_tau``: a number, or one value per batch item) is the total noise
    std of the input in scaled intensities. It is a non-persistent buffer: a model file
    stores the weights, and the noise the model denoises sets tau when it is built.
    """

    def __init__(self, width: int = 24, depth: int = 3, unshuffle: int = 2,
                 stride: int = 1) -> None:
        super().__init__(width, depth, unshuffle, stride, in_channels=2)
        self.register_buffer("tau", torch.full((1, 1, 1, 1), 0.1), persistent=False)

    def set_tau(self, tau: float | torch.Tensor) -> ConditionedUNet:
        t = torch.as_tensor(tau, dtype=torch.float32, device=self.tau.device)
        self.tau = t.reshape(-1, 1, 1, 1)
        return self

    def _unet(self, x: torch.Tensor) -> torch.Tensor:
        tau = self.tau.to(x.dtype)
        if tau.shape[0] not in (1, x.shape[0]):
            raise ValueError("one tau per batch item, or one for all")
        cond = (tau / COND_REF).expand(x.shape[0], 1, *x.shape[-2:])
        inp = torch.cat([x, cond], dim=1)
        if x.is_contiguous(memory_format=torch.channels_last):
            inp = inp.contiguous(memory_format=torch.channels_last)
        return super()._unet(inp) * tau


def conditioned_loss(
    net: ConditionedUNet, y: torch.Tensor, s: torch.Tensor, ratio: torch.Tensor,
    u: torch.Tensor,
) -> torch.Tensor:
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


def check_noise_std(tau: float, what: str = "the noise std") -> float:
    """``tau`` (scaled intensities) if the prior serves it, else one clear PriorRangeError."""
    lo, hi = TAU_RANGE
    if not (math.isfinite(tau) and lo * 0.999 <= tau <= hi * 1.001):
        raise PriorRangeError(
            f"{what} is {tau * 255:.3g} / 255 of the intensity scale, outside the prior's "
            f"range ({lo * 255:g} to {hi * 255:g} / 255){HINT}")
    return tau


def check_noise_model(noise: str) -> None:
    """Refuse, in one line, any noise model the prior does not serve."""
    if noise != NOISE:
        raise PriorRangeError(
            f"{noise} noise is outside the prior's range (Gaussian noise only){HINT}")


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


def save_prior(path: str | Path, net: ConditionedUNet, provenance: dict[str, Any]) -> Path:
    """Write the prior's weights (float32, CPU) with their provenance."""
    path = Path(path)
    arch = {"width": net.head[0].out_channels, "depth": net.depth, "unshuffle": net.unshuffle}
    payload = {"format": PRIOR_FORMAT, "format_version": 1, "arch": arch,
               "tau_range": list(TAU_RANGE), "provenance": provenance,
               "state_dict": {k: v.detach().cpu().float() for k, v in net.state_dict().items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_prior(path: str | Path | None = None) -> Prior:
    """Read the shipped prior (or a prior file written by ``save_prior``), offline."""
    path = Path(path) if path is not None else PRIOR_FILE
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
    return PRIOR_FILE.is_file()


def psnr(clean: np.ndarray, estimate: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((clean.astype(np.float64) - estimate.astype(np.float64)) ** 2))
    return 10 * math.log10(peak * peak / mse)


def prior_config(sigma: float, scale: float, arch: dict[str, int] | None = None, **options):
    """The TrainConfig of a model built on the prior's network for Gaussian noise ``sigma``
    (input units) on data of intensity ``scale``; refuses noise outside the prior's range."""
    from .config import TrainConfig

    check_noise_std(sigma / scale)
    arch = arch or PRIOR_ARCH
    values = {"noise": NOISE, "sigma": float(sigma), "network": "conditioned",
              "init": "pretrained", "decorrelate": 1, **arch, **options}
    return TrainConfig(**values)


def model_from_net(net: ConditionedUNet, sigma: float, scale: float, steps: int = 0,
                   seconds: float = 0.0, **options):
    """A Noise2ScoreModel denoising Gaussian noise ``sigma`` (input units) with ``net``
    queried at the data's own noise std (no final perturbation)."""
    from .model import Noise2ScoreModel, package_version

    arch = {"width": net.head[0].out_channels, "depth": net.depth, "unshuffle": net.unshuffle}
    config = prior_config(sigma, scale, arch, **options)
    model = Noise2ScoreModel(config=config, net=net, scale=float(scale), final_sigma_a=0.0,
                             steps=steps, seconds=seconds, version=package_version())
    return model.to(next(net.parameters()).device)


def pretrained_model(sigma: float, scale: float = 255.0, device: str = "cpu", **options):
    """The shipped prior as a ready model for Gaussian noise ``sigma`` on data of ``scale``."""
    prior = load_prior()
    model = model_from_net(prior.network().to(device), sigma, scale, **options)
    model.steps = int(prior.provenance.get("steps", 0))
    model.seconds = float(prior.provenance.get("seconds", 0.0))
    return model


#: The name that stands for the shipped prior wherever a model file is asked for.
PRETRAINED = "pretrained"


def unbound_model(device: str = "cpu"):
    """The shipped prior as a model whose noise is not known yet (``noise="auto"``): bind it
    to the data with ``bind`` before denoising."""
    from .config import AUTO, TrainConfig
    from .model import Noise2ScoreModel, package_version

    prior = load_prior()
    config = TrainConfig(noise=AUTO, network="conditioned", init=PRETRAINED, decorrelate=1,
                         **prior.arch)
    model = Noise2ScoreModel(config=config, net=prior.network(), scale=1.0, final_sigma_a=0.0,
                             steps=int(prior.provenance.get("steps", 0)),
                             seconds=float(prior.provenance.get("seconds", 0.0)),
                             version=package_version())
    return model.to(device)


def is_unbound(model) -> bool:
    return model.conditioned and model.config.noise == "auto"


def bind(model, planes, sigma: float | None = None, gain: float | None = None,
         shape: float | None = None):
    """The prior ``model`` ready for the data ``planes`` (a sample of 2D planes): Gaussian
    noise ``sigma`` (input units; estimated from the planes when None) at the planes'
    intensity scale. Returns (model, a line saying what noise it denoises)."""
    import copy

    from .estimation import estimate_noise
    from .stack import intensity_scale

    if gain is not None or shape is not None:
        check_noise_model(model_for(gain=gain, shape=shape if gain is None else None))
    how = "given"
    if sigma is None:
        estimate = estimate_noise([np.asarray(p)[None] for p in planes])
        check_noise_model(estimate.model)
        if estimate.stride > 1:
            raise PriorRangeError("correlated noise is outside the prior's range (independent "
                                  f"Gaussian noise only){HINT}")
        sigma, how = float(estimate.sigma), "estimated"
    scale = intensity_scale(list(planes))
    options = {"tta": model.config.tta, "mixed_mode": model.config.mixed_mode}
    bound = model_from_net(copy.deepcopy(model.net), sigma, scale, model.steps, model.seconds,
                           **options)
    return bound, f"pretrained prior: Gaussian noise sigma = {sigma:.4g} ({how})"


def rebind(model, sigma: float | None):
    """A noise-conditioned ``model`` for another Gaussian ``sigma`` (None: unchanged)."""
    if sigma is None or not model.conditioned or sigma == model.config.sigma:
        return model
    check_noise_std(sigma / model.scale)
    return model.for_noise(sigma)
