"""Which denoising route a model takes for Poisson-type noise, chosen by measurement.

``none``: the score is learned in photon counts and the Poisson-type Tweedie steps apply
(``mixed_mode``); ``anscombe``: the score is learned after the generalized Anscombe
transform (Gaussian noise of std 1), Gaussian Tweedie there, then the exact unbiased
inverse. The rule and the measurements behind it: docs/algorithm.md, "Low photon counts".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .config import TrainConfig


def choose_transform(config: TrainConfig, stacks: Sequence[np.ndarray]) -> TrainConfig:
    """``config`` with its transform decided (kept when the user gave one). Poisson-type
    noise takes the Anscombe route: ahead on the real FMD images on average and on
    photomultiplier-shaped noise, behind only on an exact Poisson lattice, and no estimated
    quantity told those cases apart (docs/algorithm.md, "Decision"). ``stacks`` (the
    training planes) are for rules that look at the data."""
    if config.transform is not None:
        return config
    return replace(config, transform=config.kind.default_transform)


def describe_route(config: TrainConfig) -> str:
    """One line saying how the model will denoise."""
    if config.anscombe:
        return ("route: Anscombe transform (Gaussian score and Tweedie after the generalized "
                "Anscombe transform, then its exact unbiased inverse)")
    if config.poisson_type:
        return f"route: Poisson-type Tweedie in photon counts ({config.mixed_mode})"
    return f"route: {config.noise} Tweedie"
