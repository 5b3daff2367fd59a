"""Noise models, one type per family in a registry by name (adding a regime is one
``@register``-ed class; nothing outside this module decides by a model's name): parameter
checks, simulation, variance and Tweedie's posterior-mean step.

All arrays here are in one intensity unit (the caller's choice); parameters use the same
unit: ``sigma`` is a standard deviation, ``gain`` (zeta) the intensity of one count, and
``shape`` (k) the Gamma shape, which has no unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .errors import Noise2ScoreError

MIXED_MODES = ("gaussian-then-poisson", "first-order", "affine")

# exp() arguments are clipped here: a score this large only comes from a broken model
_MAX_LOG_STEP = 20.0


class NoiseModel:
    """One noise family. Methods take its ``NoiseParams`` p: ``check(p)`` (raise for an
    impossible value), ``draw(x, p, rng)``, ``tweedie(y, score, p, s2, mixed_mode)`` (s2:
    the smoothing's variance), ``variance(level, p, s2)`` (at the local level, None unless
    ``signal_dependent``; s2 added) and ``typical_std(level, p)``. ``searched``: the blind
    search's parameter (``read_noise_search``: a read noise, may be 0), scored by
    ``criterion``: ``tv_weight`` TV + the summed ``likelihood``; ``counts``: shot noise, in
    photon counts or on the ``default_transform``; ``relative``: std proportional to the
    signal; ``score_estimable``: the score estimate reads its level from the learned score.
    """

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]]
    searched: ClassVar[str]
    criterion: ClassVar[str]
    tv_weight, likelihood, default_transform = 1.0, None, "none"
    signal_dependent, counts, relative, read_noise_search, score_estimable = (
        True, False, False, False, False)

    def check(self, p: NoiseParams) -> None:
        pass

    def read_variance(self, p: NoiseParams) -> float:
        """Variance of the Gaussian part of the noise (read noise), 0 when none."""
        return 0.0


NOISE_TYPES: dict[str, NoiseModel] = {}


def register(cls: type[NoiseModel]) -> type[NoiseModel]:
    """Add a noise family to the registry (by its ``name``)."""
    NOISE_TYPES[cls.name] = cls()
    return cls


def noise_model(name: str) -> NoiseModel:
    """The registered noise family called ``name``; a clear error for an unknown one."""
    try:
        return NOISE_TYPES[name]
    except (KeyError, TypeError):
        raise Noise2ScoreError(f"unknown noise model {name!r}; choose one of "
                               f"{', '.join(NOISE_TYPES)}") from None


def _check_mixed_mode(mixed_mode: str) -> None:
    if mixed_mode not in MIXED_MODES:
        raise Noise2ScoreError(f"unknown mixed mode {mixed_mode!r}; choose {MIXED_MODES}")


def _non_negative(x: np.ndarray, family: str) -> None:
    if np.any(x < 0):
        raise Noise2ScoreError(f"{family} noise needs a non-negative clean image")


@register
class Gaussian(NoiseModel):
    name, needs, searched, criterion = "gaussian", ("sigma",), "sigma", "total variation"
    signal_dependent, score_estimable = False, True

    def check(self, p):
        if p.sigma <= 0:
            raise Noise2ScoreError(f"sigma must be > 0, got {p.sigma}")

    def draw(self, x, p, rng):
        return x + p.sigma * rng.standard_normal(x.shape)

    def tweedie(self, y, score, p, s2, mixed_mode):
        return y + (p.sigma**2 + s2) * score

    def variance(self, level, p, s2):
        return p.sigma**2 + s2

    def typical_std(self, level, p):
        return p.sigma


@register
class Poisson(NoiseModel):
    name, needs, searched = "poisson", ("gain",), "gain"
    criterion, tv_weight = "0.1 TV + Poisson likelihood", 0.1
    counts, default_transform = True, "anscombe"

    def check(self, p):
        if p.gain <= 0:
            raise Noise2ScoreError(f"gain must be > 0, got {p.gain}")

    def draw(self, x, p, rng):
        _non_negative(x, "Poisson")
        return p.gain * rng.poisson(x / p.gain)

    def tweedie(self, y, score, p, s2, mixed_mode):
        _check_mixed_mode(mixed_mode)
        # Gaussian part: the camera's read noise and the training perturbation sigma_a
        read2 = self.read_variance(p) + s2
        zeta = p.gain
        if mixed_mode == "first-order":
            # one Gaussian-form step with the affine variance of the mixed noise
            return y + (read2 + zeta * np.maximum(y, 0.0)) * score
        if mixed_mode == "affine":
            # near and below zero signal the correction term zeta^2 / 2v must stay bounded
            v = np.maximum(zeta * y + read2, 0.5 * (read2 + zeta * zeta))
            log_step = np.clip(zeta * score + zeta * zeta / (2 * v), -_MAX_LOG_STEP,
                               _MAX_LOG_STEP)
            return (v * np.exp(log_step) - read2) / zeta
        # Gaussian-then-Poisson: remove the Gaussian part, then the shot noise
        y1 = y + read2 * score
        log_step = np.clip(zeta * score, -_MAX_LOG_STEP, _MAX_LOG_STEP)
        return (y1 + zeta / 2) * np.exp(log_step)

    def variance(self, level, p, s2):
        return level.clip(min=0.0) + (0.5 + self.read_variance(p) + s2)

    def typical_std(self, level, p):
        return math.sqrt(level + self.read_variance(p))

    @staticmethod
    def likelihood(xp, yp):
        return np.sum(xp - yp * np.log(xp))


@register
class Gamma(NoiseModel):
    name, needs, searched, criterion = "gamma", ("shape",), "shape", "TV + Gamma likelihood"
    relative = score_estimable = True

    def check(self, p):
        if p.shape <= 1:
            raise Noise2ScoreError(f"Gamma shape k must be > 1, got {p.shape}")

    def draw(self, x, p, rng):
        _non_negative(x, "Gamma")
        return x * rng.gamma(p.shape, 1.0 / p.shape, x.shape)

    def tweedie(self, y, score, p, s2, mixed_mode):
        _check_mixed_mode(mixed_mode)
        k = p.shape
        y1 = y + s2 * score
        denom = np.maximum((k - 1) - y1 * score, 0.05 * (k - 1))
        return k * y1 / denom

    def variance(self, level, p, s2):
        return level.clip(min=1e-3) ** 2 / p.shape + s2

    def typical_std(self, level, p):
        return level / math.sqrt(p.shape)

    @staticmethod
    def likelihood(xp, yp):
        ratio = yp / xp
        return np.sum(np.log(xp) + ratio + ratio * ratio)


@register
class PoissonGaussian(Poisson):
    name, needs, searched = "poisson-gaussian", ("gain", "sigma"), "sigma"
    read_noise_search = True

    def check(self, p):
        if p.sigma < 0:
            raise Noise2ScoreError(f"read-noise sigma must be >= 0, got {p.sigma}")
        super().check(p)

    def read_variance(self, p):
        return (p.sigma or 0.0) ** 2

    def draw(self, x, p, rng):
        return super().draw(x, p, rng) + p.sigma * rng.standard_normal(x.shape)


NOISE_MODELS = tuple(NOISE_TYPES)
GAUSSIAN = NOISE_TYPES["gaussian"]


@dataclass(frozen=True)
class NoiseParams:
    """A noise model and its parameters, in one intensity unit."""

    model: str
    sigma: float | None = None
    gain: float | None = None
    shape: float | None = None

    def __post_init__(self) -> None:
        noise_model(self.model)

    @property
    def kind(self) -> NoiseModel:
        """The noise family (type) of these parameters."""
        return NOISE_TYPES[self.model]

    @property
    def needs(self) -> tuple[str, ...]:
        """Names of the parameters this model needs."""
        return self.kind.needs

    def validate(self) -> NoiseParams:
        """Raise a clear error for a missing or impossible parameter; return self."""
        for name in self.needs:
            value = getattr(self, name)
            if value is None:
                raise Noise2ScoreError(
                    f"{self.model} noise needs the {name} parameter ({_DESCRIBE[name]})")
            if not np.isfinite(value):
                raise Noise2ScoreError(f"{name} must be a finite number, got {value}")
        self.kind.check(self)
        return self

    def rescaled(self, factor: float) -> NoiseParams:
        """The same noise with intensities divided by ``factor``."""
        return NoiseParams(self.model, None if self.sigma is None else self.sigma / factor,
                           None if self.gain is None else self.gain / factor, self.shape)


def model_for(sigma: float | None = None, gain: float | None = None,
              shape: float | None = None) -> str | None:
    """The noise model the given parameters describe: a sigma alone is Gaussian, a gain
    Poisson (with a sigma, Poisson-Gaussian), a shape Gamma; None for none or another mix."""
    given = {n for n, v in (("sigma", sigma), ("gain", gain), ("shape", shape)) if v is not None}
    return next((name for name, kind in NOISE_TYPES.items() if set(kind.needs) == given), None)


def check_applicable(model: str, **given: float | None) -> None:
    """Raise Noise2ScoreError for a parameter given (not None) that ``model`` does not take,
    e.g. a gain for Gaussian noise, instead of silently ignoring it."""
    needs = NOISE_TYPES[model].needs if model in NOISE_MODELS else ()  # auto: estimated
    unused = [name for name, value in given.items() if value is not None and name not in needs]
    if unused:
        names = f"{' and '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply"
        if not needs:
            raise Noise2ScoreError(f"{names} with {model} noise: the parameters are estimated")
        raise Noise2ScoreError(f"{names} to {model} noise (it takes {' and '.join(needs)})")


_DESCRIBE = {"sigma": "noise standard deviation in the image's intensity units",
             "gain": "intensity of one photon count, zeta", "shape": "Gamma shape parameter k > 1"}


def simulate(clean: np.ndarray, noise: NoiseParams, seed: int | None = 0) -> np.ndarray:
    """Noisy version of ``clean`` (float64, never clipped: clipping biases Tweedie)."""
    noise.validate()
    return noise.kind.draw(np.asarray(clean, dtype=np.float64), noise,
                           np.random.default_rng(seed))


def tweedie(y: np.ndarray, score: np.ndarray, noise: NoiseParams, smoothing: float = 0.0,
            mixed_mode: str = "gaussian-then-poisson") -> np.ndarray:
    """Posterior-mean estimate of the clean image from ``y`` and the score d log p(y)/dy.
    ``smoothing``, the std of the Gaussian perturbation whose smoothed density the score
    describes (the last sigma_a of training), is removed as Gaussian noise, with the read
    noise of Poisson-Gaussian data, before the Poisson or Gamma step."""
    noise.validate()
    return noise.kind.tweedie(np.asarray(y), np.asarray(score), noise, smoothing**2, mixed_mode)
