"""Noise models: simulation, parameter checks and Tweedie's posterior-mean step.

All arrays here are in one intensity unit (the caller's choice); parameters use the same
unit: ``sigma`` is a standard deviation, ``gain`` (zeta) the intensity of one count, and
``shape`` (k) the Gamma shape, which has no unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import Noise2ScoreError

NOISE_MODELS = ("gaussian", "poisson", "gamma", "poisson-gaussian")
MIXED_MODES = ("gaussian-then-poisson", "first-order", "affine")

# exp() arguments are clipped here: a score this large only comes from a broken model
_MAX_LOG_STEP = 20.0


@dataclass(frozen=True)
class NoiseParams:
    """A noise model and its parameters, in one intensity unit."""

    model: str
    sigma: float | None = None
    gain: float | None = None
    shape: float | None = None

    def __post_init__(self) -> None:
        if self.model not in NOISE_MODELS:
            raise Noise2ScoreError(
                f"unknown noise model {self.model!r}; choose one of {', '.join(NOISE_MODELS)}"
            )

    @property
    def needs(self) -> tuple[str, ...]:
        """Names of the parameters this model needs."""
        return {
            "gaussian": ("sigma",),
            "poisson": ("gain",),
            "gamma": ("shape",),
            "poisson-gaussian": ("gain", "sigma"),
        }[self.model]

    def validate(self) -> NoiseParams:
        """Raise a clear error for a missing or impossible parameter; return self."""
        for name in self.needs:
            value = getattr(self, name)
            if value is None:
                raise Noise2ScoreError(
                    f"{self.model} noise needs --{name} ({_DESCRIBE[name]})"
                )
            if not np.isfinite(value):
                raise Noise2ScoreError(f"{name} must be a finite number, got {value}")
        if self.model == "gaussian" and self.sigma <= 0:
            raise Noise2ScoreError(f"sigma must be > 0, got {self.sigma}")
        if self.model == "poisson-gaussian" and self.sigma < 0:
            raise Noise2ScoreError(f"read-noise sigma must be >= 0, got {self.sigma}")
        if self.model in ("poisson", "poisson-gaussian") and self.gain <= 0:
            raise Noise2ScoreError(f"gain must be > 0, got {self.gain}")
        if self.model == "gamma" and self.shape <= 1:
            raise Noise2ScoreError(f"Gamma shape k must be > 1, got {self.shape}")
        return self

    def rescaled(self, factor: float) -> NoiseParams:
        """The same noise with intensities divided by ``factor``."""
        return NoiseParams(
            self.model,
            None if self.sigma is None else self.sigma / factor,
            None if self.gain is None else self.gain / factor,
            self.shape,
        )


def model_for(sigma: float | None = None, gain: float | None = None,
              shape: float | None = None) -> str | None:
    """The noise model that the given parameters describe, when no model was named: a
    sigma alone is Gaussian, a gain Poisson (with a sigma, Poisson-Gaussian), a shape Gamma;
    None when none (or a mix that no model takes) was given."""
    given = frozenset(n for n, v in (("sigma", sigma), ("gain", gain), ("shape", shape))
                      if v is not None)
    return {frozenset({"sigma"}): "gaussian", frozenset({"gain"}): "poisson",
            frozenset({"gain", "sigma"}): "poisson-gaussian",
            frozenset({"shape"}): "gamma"}.get(given)


def check_applicable(model: str, **given: float | None) -> None:
    """Raise Noise2ScoreError for a parameter given (not None) that ``model`` does not take,
    e.g. a gain for Gaussian noise, instead of silently ignoring it."""
    needs = NoiseParams(model).needs if model in NOISE_MODELS else ()  # auto: estimated
    unused = [name for name, value in given.items() if value is not None and name not in needs]
    if unused:
        names = f"{' and '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply"
        if not needs:
            raise Noise2ScoreError(f"{names} with {model} noise: the parameters are estimated")
        raise Noise2ScoreError(f"{names} to {model} noise (it takes {' and '.join(needs)})")


_DESCRIBE = {
    "sigma": "noise standard deviation in the image's intensity units",
    "gain": "intensity of one photon count, zeta",
    "shape": "Gamma shape parameter k > 1",
}


def simulate(clean: np.ndarray, noise: NoiseParams, seed: int | None = 0) -> np.ndarray:
    """Noisy version of ``clean`` (float64, never clipped: clipping biases Tweedie)."""
    noise.validate()
    rng = np.random.default_rng(seed)
    x = np.asarray(clean, dtype=np.float64)
    if noise.model == "gaussian":
        return x + noise.sigma * rng.standard_normal(x.shape)
    if noise.model == "gamma":
        if np.any(x < 0):
            raise Noise2ScoreError("Gamma noise needs a non-negative clean image")
        return x * rng.gamma(noise.shape, 1.0 / noise.shape, x.shape)
    if np.any(x < 0):
        raise Noise2ScoreError("Poisson noise needs a non-negative clean image")
    y = noise.gain * rng.poisson(x / noise.gain)
    if noise.model == "poisson-gaussian":
        y = y + noise.sigma * rng.standard_normal(x.shape)
    return y


def tweedie(
    y: np.ndarray,
    score: np.ndarray,
    noise: NoiseParams,
    smoothing: float = 0.0,
    mixed_mode: str = "gaussian-then-poisson",
) -> np.ndarray:
    """Posterior-mean estimate of the clean image from ``y`` and the score d log p(y)/dy.

    ``smoothing`` is the std of the Gaussian perturbation whose smoothed density the score
    describes (the last sigma_a of training): it is removed as Gaussian noise, together with
    the read noise of Poisson-Gaussian data, before the Poisson or Gamma step.
    """
    noise.validate()
    y = np.asarray(y)
    score = np.asarray(score)
    s2 = smoothing**2
    if noise.model == "gaussian":
        return y + (noise.sigma**2 + s2) * score
    if mixed_mode not in MIXED_MODES:
        raise Noise2ScoreError(f"unknown mixed mode {mixed_mode!r}; choose {MIXED_MODES}")
    # Gaussian part: the camera's read noise and the training perturbation sigma_a
    read2 = (noise.sigma**2 if noise.model == "poisson-gaussian" else 0.0) + s2
    if noise.model == "gamma":
        k = noise.shape
        y1 = y + read2 * score
        denom = np.maximum((k - 1) - y1 * score, 0.05 * (k - 1))
        return k * y1 / denom
    zeta = noise.gain
    if mixed_mode == "first-order":
        # one Gaussian-form step with the affine variance of the mixed noise
        return y + (read2 + zeta * np.maximum(y, 0.0)) * score
    if mixed_mode == "affine":
        # near and below zero signal the correction term zeta^2 / 2v must stay bounded
        v = np.maximum(zeta * y + read2, 0.5 * (read2 + zeta * zeta))
        log_step = np.clip(zeta * score + zeta * zeta / (2 * v), -_MAX_LOG_STEP, _MAX_LOG_STEP)
        return (v * np.exp(log_step) - read2) / zeta
    # Gaussian-then-Poisson: remove the Gaussian part, then the shot noise
    y1 = y + read2 * score
    log_step = np.clip(zeta * score, -_MAX_LOG_STEP, _MAX_LOG_STEP)
    return (y1 + zeta / 2) * np.exp(log_step)
