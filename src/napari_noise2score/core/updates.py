"""The typed updates a training run yields (progress, the noise estimated, notes, the end):
below both ``training`` and ``finetune``, which yield them."""

from __future__ import annotations

from dataclasses import dataclass

from .estimation import NoiseEstimate
from .model import Noise2ScoreModel


@dataclass(frozen=True)
class TrainProgress:
    """One training step done."""

    step: int
    loss: float
    sigma_a: float
    elapsed: float
    eta: float
    fraction: float


@dataclass(frozen=True)
class NoiseEstimated:
    """Noise parameters estimated from the training data (``noise="auto"``), before use,
    and the denoising route chosen for them (``route.describe_route``)."""

    estimate: NoiseEstimate
    route: str = ""


@dataclass(frozen=True)
class TrainDone:
    """Training ended (budget spent, or stopped early when ``stopped``)."""

    model: Noise2ScoreModel
    stopped: bool


@dataclass(frozen=True)
class TrainNote:
    """A line for the user about the run (where it starts, what fine-tuning kept)."""

    text: str


TrainUpdate = TrainProgress | NoiseEstimated | TrainNote | TrainDone
