"""The generalized Anscombe transform (GAT) for Poisson-Gaussian noise, and its inverse.

Observation model, in the input's units: y = gain * Poisson(x / gain) + N(offset, sigma^2).
In counts z = (y - offset) / gain the transform is f = 2 sqrt(z + 3/8 + s^2), s = sigma / gain,
whose noise is close to Gaussian with unit variance. A denoiser in that domain estimates
E[f | x], not f(x): the exact unbiased inverse maps that expectation back to x (Makitalo &
Foi, IEEE TIP 22(1), 2013; the closed-form approximation of their exact inverse is used).
"""

from __future__ import annotations

import numpy as np

from .errors import Noise2ScoreError

#: Expected GAT value of a zero-intensity pure-Poisson pixel: 2 sqrt(3/8); the inverse's
#: asymptotic expansion is exactly 0 there and diverges below it.
D_MIN = 2.0 * np.sqrt(3.0 / 8.0)


def _check(gain: float, sigma: float) -> None:
    if not gain > 0:
        raise Noise2ScoreError(f"the Anscombe transform needs a gain > 0, got {gain}")
    if not sigma >= 0:
        raise Noise2ScoreError(f"the Anscombe transform needs a read noise >= 0, got {sigma}")


def gat_forward(y: np.ndarray, gain: float, sigma: float, offset: float = 0.0) -> np.ndarray:
    """Generalized Anscombe transform of ``y`` (input units); the noise std afterwards is ~1.
    Values below the square root's domain (far below the offset) map to 0."""
    _check(gain, sigma)
    z = (np.asarray(y, dtype=np.float64) - offset) / gain
    return 2.0 * np.sqrt(np.maximum(z + 0.375 + (sigma / gain) ** 2, 0.0))


def gat_inverse(d: np.ndarray, gain: float, sigma: float, offset: float = 0.0) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse of the GAT (input units):
    I(D) = D^2/4 + sqrt(3/2)/4 D^-1 - 11/8 D^-2 + 5/8 sqrt(3/2) D^-3 - 1/8 - s^2, clipped at
    0 counts, with D clamped from below at ``D_MIN``; x = gain * I(D) + offset."""
    _check(gain, sigma)
    d = np.maximum(np.asarray(d, dtype=np.float64), D_MIN)
    r = np.sqrt(1.5)
    counts = (0.25 * d**2 + 0.25 * r / d - 1.375 / d**2 + 0.625 * r / d**3 - 0.125
              - (sigma / gain) ** 2)
    return gain * np.maximum(counts, 0.0) + offset
