"""The typed updates a training run yields (progress, the noise estimated, notes, the end)
and the step and budget bookkeeping: below both ``training`` and ``finetune``, which share
them."""

from __future__ import annotations

import math
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

    @classmethod
    def at(cls, step: int, loss: float, sigma_a: float, elapsed: float,
           fraction: float) -> TrainProgress:
        """The update after ``step`` with ``fraction`` of the budget spent (ETA from it)."""
        eta = elapsed / fraction * (1 - fraction) if fraction < 1 else 0.0
        return cls(step, loss, sigma_a, elapsed, eta, min(fraction, 1.0))


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


def budget_spent(config, step: int, elapsed: float) -> float:
    """The share of the training budget spent: steps or seconds, whichever runs out first."""
    fractions = [step / config.max_steps] if config.max_steps is not None else []
    if config.max_seconds is not None:
        fractions.append(elapsed / config.max_seconds)
    return max(fractions)


def cosine_decay(fraction: float) -> float:
    """The learning rate's factor at ``fraction`` of the budget: cosine from 1 to 0.05."""
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * fraction))


def optimiser_step(optimiser, loss) -> float:
    """One optimiser step on ``loss``; the loss's value."""
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return float(loss.detach())
