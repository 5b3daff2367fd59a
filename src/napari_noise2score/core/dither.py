"""Unit noise everywhere after the Anscombe transform: dithering the darkest pixels.

The generalized Anscombe transform stabilises the noise variance to 1 only from a few
photons up. Below that, with little read noise, the transformed noise is much narrower
(0.1 at zero photons and read noise 0.18 photons; a point mass at the dark level of a
photomultiplier). A score learned on such data is steep around the dark level, and Tweedie's
step, which assumes unit noise, multiplies it by 1: dark and one-photon pixels overshoot to
black (docs/algorithm.md, "Low photon counts"). Training patches therefore get, at each
pixel, fresh Gaussian noise of the variance missing to 1 at the pixel's local signal level,
so the learned score is that of unit-noise data, the density Tweedie's step assumes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from .anscombe import gat_inverse
from .score import local_level

#: Dither the training patches of the Anscombe route (switched off only to measure it).
ENABLED = True
#: Photon counts up to which the transformed variance is tabulated (above: 1 to 1 %).
MAX_COUNTS = 12.0
_GRID = np.linspace(0.0, MAX_COUNTS, 241)


@functools.lru_cache(maxsize=64)
def _variance_table(s: float) -> np.ndarray:
    """Variance of 2 sqrt(K + N(0, s^2) + 3/8 + s^2), K ~ Poisson(lam), over ``_GRID``."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(32)
    weights = weights / weights.sum()
    k = np.arange(int(MAX_COUNTS + 12 * np.sqrt(MAX_COUNTS) + 16), dtype=np.float64)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(k[1:]))])
    f = 2.0 * np.sqrt(np.maximum(k[:, None] + s * nodes[None, :] + 0.375 + s * s, 0.0))
    out = np.empty_like(_GRID)
    for i, lam in enumerate(_GRID):
        pk = np.exp(k * np.log(lam) - lam - log_fact) if lam > 0 else (k == 0).astype(float)
        w = pk[:, None] * weights[None, :]
        mean = float((w * f).sum())
        out[i] = float((w * (f - mean) ** 2).sum())
    return out


def transformed_variance(counts: np.ndarray, s: float) -> np.ndarray:
    """Noise variance after the transform at mean photon counts ``counts`` (read noise ``s``
    photons)."""
    table = _variance_table(round(float(s), 4))
    return np.interp(np.clip(counts, 0.0, MAX_COUNTS), _GRID, table, right=1.0)


def deficit_std(d: np.ndarray, gain: float, sigma: float) -> np.ndarray:
    """Per pixel of the transformed plane ``d``: the std of the Gaussian noise that brings
    its noise variance, at its local level, up to 1 (0 where it is 1 or more), float32."""
    level = local_level(np.asarray(d, dtype=np.float32))
    counts = gat_inverse(level, gain, sigma) / gain
    missing = 1.0 - transformed_variance(counts, sigma / gain)
    return np.sqrt(np.maximum(missing, 0.0)).astype(np.float32)


def with_dither(planes: list[np.ndarray], params: Sequence[tuple[float, float]], scale: float,
                floor: float = 0.05) -> list[np.ndarray]:
    """Transformed ``planes`` (unit noise before dividing by ``scale``; ``params``: each
    plane's gain and read noise) as the planes to sample patches from: divided by ``scale``,
    each with its deficit std as a second channel when more than 1 % of the pixels of a plane
    lack over ``floor`` of it, else as they are."""
    scaled = [p / np.float32(scale) for p in planes]
    deficits = [deficit_std(p, gain, sigma)
                for p, (gain, sigma) in zip(planes, params, strict=True)]
    if not any(float(np.mean(d > floor)) > 0.01 for d in deficits):
        return scaled
    return [np.stack([p, d / np.float32(scale)]) for p, d in zip(scaled, deficits, strict=True)]


def apply(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Patches (N, C, p, p): unchanged with one channel; with two, value + std * fresh noise."""
    if batch.shape[1] == 1:
        return batch
    noise = torch.randn(batch[:, 1:].shape, generator=generator)
    return batch[:, :1] + batch[:, 1:] * noise
