"""From network output to score: the denoiser-style parameterisation of the score.

The network returns a residual r(z) in scaled intensities (so z + r is a denoised image) and
the score, in the training domain w (counts for Poisson-type noise, scaled intensity
otherwise), is R(w) = r / (domain * v(w)), with v the noise variance the training noise
model predicts at w, the training perturbation sigma_a included. Any score can still be
represented (r is free), so the AR-DAE minimiser is unchanged; but the network learns a
well-scaled, smooth target, and at the start (r = 0) the score is 0. This preconditioning
makes short CPU trainings far better than a network that must output the raw score.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from .anscombe import gat_forward, gat_inverse
from .config import TrainConfig
from .noise import GAUSSIAN, NoiseParams

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def training_domain(config: TrainConfig, scale: float) -> tuple[float, NoiseParams]:
    """The training domain of a model whose intensities are divided by ``scale``: the scaled
    intensity of one domain unit (one photon count for Poisson-type noise, else 1.0) and the
    noise parameters in that domain (after the Anscombe transform, Gaussian of std 1 before
    scaling)."""
    if config.anscombe:
        return 1.0, NoiseParams(GAUSSIAN.name, sigma=1.0 / scale)
    domain = config.gain / scale if config.count_domain else 1.0
    return domain, config.noise_params.rescaled(scale).rescaled(domain)


def to_network_units(config: TrainConfig, plane: np.ndarray) -> np.ndarray:
    """Input intensities to the network's units before scaling: the offset removed, or the
    generalized Anscombe transform (float32)."""
    if config.anscombe:
        return gat_forward(plane, config.gain, config.sigma or 0.0, config.offset).astype(
            np.float32)
    return np.asarray(plane).astype(np.float32) - np.float32(config.offset)


def from_network_units(config: TrainConfig, x: np.ndarray) -> np.ndarray:
    """Inverse of ``to_network_units`` for a denoised image (the exact unbiased inverse of
    the Anscombe transform), float32."""
    if config.anscombe:
        return gat_inverse(x, config.gain, config.sigma or 0.0, config.offset).astype(
            np.float32)
    return (x + np.float32(config.offset)).astype(np.float32)


#: Side of the box over which the signal level of the variance function is averaged.
LEVEL_BOX = 5


def local_level(w: Array) -> Array:
    """Mean of ``w`` over a LEVEL_BOX square around each pixel (over the pixels inside the
    image at its borders): the signal level the noise variance is predicted from. A single
    noisy pixel would make the predicted variance itself noisy (at a few counts it varies by
    half), and the network would have to learn that noise back."""
    t = torch.as_tensor(w)
    shape = t.shape
    t4 = t.reshape(-1, 1, *shape[-2:])
    level = F.avg_pool2d(t4, LEVEL_BOX, stride=1, padding=LEVEL_BOX // 2,
                         count_include_pad=False).reshape(shape)
    return level.numpy() if isinstance(w, np.ndarray) else level


def variance(w: Array, noise_w: NoiseParams, sigma_a: float) -> Array | float:
    """Predicted noise variance at the local level of ``w`` (training domain), plus the
    perturbation's."""
    kind = noise_w.kind
    level = local_level(w) if kind.signal_dependent else None
    return kind.variance(level, noise_w, sigma_a * sigma_a)


def score_from_residual(residual: Array, z_scaled: Array, noise_w: NoiseParams, domain: float,
                        sigma_a: float) -> Array:
    """Score in the training domain from the network's residual at scaled input ``z_scaled``."""
    return residual / (domain * variance(z_scaled / domain, noise_w, sigma_a))
