"""Noise parameters of one plane on the Anscombe route, where the stack's estimate overstates them.

A stack's noise is estimated once, on a sample of its planes. When its planes were scaled
one by one (each capture stretched to 8 bits, as in W2S), that one estimate can overstate a
plane's noise: transformed with it, the plane's noise std is about 0.65 instead of 1,
Tweedie's unit step over-corrects it three-fold and the result falls below the noisy input
(W2S channel 2, FOV 54 and 55). After the transform the network is the same for any
parameters, so such a plane is transformed, learned from and inverted with its own estimate.
The guard is one-sided: a plane whose own estimate is weaker than the model's by less than
``RATIO`` keeps the model's (under-correction only leaves some noise), so a stack of one
set of parameters, whose planes' estimates scatter by about 10 %, keeps one set
(docs/algorithm.md, "One estimate for a stack of separately scaled planes").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import TrainConfig
from .errors import Noise2ScoreError
from .estimation import estimate_noise
from .noise import NOISE_TYPES
from .score import local_level, to_network_units
from .stack import intensity_scale

#: A plane takes its own estimate when its noise variance, averaged over its pixels' local
#: levels, is below this share of the model's (measured: docs/algorithm.md).
RATIO = 0.75
#: Side of the central window a larger plane's own noise is estimated on.
WINDOW = 1024


def _variance(level: np.ndarray, config: TrainConfig) -> np.ndarray:
    """Poisson-Gaussian noise variance at the local ``level`` (input units)."""
    read = config.sigma or 0.0
    return config.gain * np.maximum(level - config.offset, 0.0) + read * read


def central_slices(height: int, width: int, side: int = WINDOW) -> tuple[slice, slice]:
    """Rows and columns of a plane's central ``side`` x ``side`` window (all of a smaller
    plane): where its own noise is estimated."""
    y0, x0 = max(height - side, 0) // 2, max(width - side, 0) // 2
    return slice(y0, y0 + side), slice(x0, x0 + side)


def variance_ratio(plane: np.ndarray, own: TrainConfig, model: TrainConfig) -> float:
    """Mean over the plane's pixels of the noise variance under ``own`` over that under
    ``model``, both at the pixel's local level."""
    level = local_level(np.asarray(plane, dtype=np.float32)).astype(np.float64)
    floor = 1e-12
    return float(np.mean(np.maximum(_variance(level, own), floor)
                         / np.maximum(_variance(level, model), floor)))


def config_for_plane(config: TrainConfig, plane: np.ndarray) -> TrainConfig:
    """``config``, or a copy with ``plane``'s own Poisson-type estimate when the model's
    parameters overstate that plane's noise (see the module's text). Only for models whose
    noise was estimated (``per_plane_noise``) on the Anscombe route."""
    if not (config.anscombe and config.per_plane_noise):
        return config
    plane = np.asarray(plane)
    window = plane[(..., *central_slices(*plane.shape[-2:]))]
    try:
        estimate = estimate_noise(window)
    except Noise2ScoreError:
        return config
    kind = NOISE_TYPES.get(estimate.model)
    if kind is None or not kind.counts or not (estimate.gain or 0) > 0:
        return config
    if estimate.stride != (config.decorrelate or 1):
        return config
    own = config.with_estimate(estimate)
    if variance_ratio(window, own, config) >= RATIO:
        return config
    return own


def transformed_planes(config: TrainConfig, planes: Sequence[np.ndarray]
                       ) -> tuple[list[np.ndarray], list[tuple[float, float]], int]:
    """The Anscombe transforms of ``planes``, each with its plane's parameters
    (``config_for_plane``); their (gain, read noise) pairs; how many took their own."""
    out, params, own = [], [], 0
    for plane in planes:
        cfg = config_for_plane(config, plane)
        own += cfg is not config
        out.append(to_network_units(cfg, plane))
        params.append((float(cfg.gain), float(cfg.sigma or 0.0)))
    return out, params, own


def transformed_scale(planes: Sequence[np.ndarray]) -> float:
    """The intensity scale of transformed ``planes``: the median over planes of each one's
    robust maximum. Pooling them would let the few planes transformed with their own, lower
    gain (larger values after the transform) set the scale of every plane: on W2S channel 2
    the pooled scale was 8.69 against 6.23 for six of its eight planes, and the prior at that
    scale lost 4.7 dB on them (docs/algorithm.md, "The Anscombe route's scale")."""
    return float(np.median([intensity_scale([p]) for p in planes]))


def describe(own: int, total: int) -> str:
    """One line on the ``own`` planes of ``total`` that took their own noise estimate."""
    return (f"{own} of {total} planes overstated by the stack's noise estimate: each "
            "transformed with its own")
