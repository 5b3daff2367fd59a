"""Blind Tweedie: the noise parameter chosen at test time, from a trained model.

Two estimators, both on a bounded sample of the planes (centre crops, evenly spaced planes):

- ``blind_search``: a grid over one noise parameter. The network's residual is computed
  once per plane; for every grid value the (pointwise) score conversion and Tweedie step
  give a denoised image, scored by the quality criterion Q of the noise model (total
  variation for Gaussian noise, TV plus a likelihood term for Poisson and Gamma noise).
  The value with the lowest Q wins.
- ``score_estimate``: the noise level read from the learned score itself, with two forward
  passes: for Gaussian noise the score's derivative is -1/sigma^2 where the signal is
  locally flat, so sigma^2 ~= median(-delta / (R(y + delta) - R(y))).

The score conversion depends only on the training parameters (stored in the model), never
on the swept value, which is what makes one forward pass enough for the whole sweep. For
Poisson-type models the conversion uses the training gain (the network's count domain and
preconditioning), so the score stays the one learned; the sweep varies zeta only inside
Tweedie's formula.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .errors import Noise2ScoreError
from .inference import DEFAULT_TILE, predict_plane
from .layout import sample_windows
from .model import Noise2ScoreModel
from .noise import NoiseModel, noise_model, tweedie

MAX_PIXELS = 2_000_000
GRID_SIZE = 41
GRID_SPAN = 4.0  # default grid: training value / 4 to training value * 4, geometric


@dataclass(frozen=True)
class BlindResult:
    """A noise parameter chosen at test time (input units), with the evidence for it."""

    parameter: str
    value: float
    method: str
    grid: tuple[float, ...] = ()
    quality: tuple[float, ...] = ()
    seconds: float = 0.0
    pixels: int = 0

    @property
    def on_edge(self) -> bool:
        """Whether the minimiser is the first or last grid value (the grid may be too narrow)."""
        return len(self.grid) > 1 and self.value in (self.grid[0], self.grid[-1])

    def describe(self) -> str:
        text = f"blind {self.method}: {self.parameter} = {self.value:.4g} ("
        if self.grid:
            text += f"grid {self.grid[0]:.4g} to {self.grid[-1]:.4g}, {len(self.grid)} values; "
        text += f"{self.pixels / 1e6:.2f} Mpx in {self.seconds:.1f} s)"
        if self.on_edge:
            text += "; at the edge of the grid: widen it"
        return text


def sample_planes(planes: Sequence[np.ndarray], max_pixels: int = MAX_PIXELS) -> list[np.ndarray]:
    """Evenly spaced planes, each centre-cropped, with at most ``max_pixels`` in all."""
    planes = [np.asarray(p) for p in planes]
    if not planes or any(p.ndim != 2 or min(p.shape) < 1 for p in planes):
        raise Noise2ScoreError("the blind search needs non-empty 2D planes")
    per = max(max_pixels // len(planes), max_pixels // 16, 64 * 64)
    return [planes[i][ys, xs] for i, ys, xs in
            sample_windows([p.shape for p in planes], max_pixels // per, per)]


def default_grid(model: Noise2ScoreModel, parameter: str, size: int = GRID_SIZE) -> np.ndarray:
    """A geometric grid around the model's training value (input units)."""
    centre = getattr(model.config, parameter)
    if parameter == model.config.kind.searched and model.config.kind.read_noise_search:
        # read noise may be anything from none to several counts' worth
        top = max(4 * (centre or 0.0), 2 * model.config.gain)
        return np.linspace(0.0, top, size)
    if centre is None or not centre > 0:
        raise Noise2ScoreError(f"the model has no training {parameter}: give a grid")
    grid = centre * np.geomspace(1 / GRID_SPAN, GRID_SPAN, size)
    grid[np.argmin(np.abs(grid - centre))] = centre  # the training value itself, exactly
    if parameter == "shape":
        grid = grid[grid > 1.0]
    return grid


def check_grid(model: Noise2ScoreModel, parameter: str, grid: Sequence[float]) -> np.ndarray:
    """The grid as a sorted float array; a clear error for impossible values."""
    values = np.asarray(grid, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise Noise2ScoreError("the blind-search grid must hold finite numbers")
    low = 1.0 if parameter == "shape" else 0.0
    read_noise = parameter == model.config.kind.searched and model.config.kind.read_noise_search
    bad = values[values < 0] if read_noise else values[values <= low]
    if bad.size:
        bound = ">= 0" if read_noise else f"> {low:g}"
        raise Noise2ScoreError(f"every {parameter} on the grid must be {bound}, got {bad[0]:g}")
    return np.unique(values)


def total_variation(x: np.ndarray) -> float:
    """Sum of absolute horizontal and vertical differences (anisotropic TV)."""
    return float(np.abs(np.diff(x, axis=0)).sum() + np.abs(np.diff(x, axis=1)).sum())


def _criterion_terms(kind: NoiseModel, x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """(TV, summed likelihood term, pixels in it) of one plane, in scaled intensities."""
    tv = total_variation(x)
    if kind.likelihood is None:
        return tv, 0.0, x.size
    pos = x > 0
    xp, yp = x[pos].astype(np.float64), y[pos].astype(np.float64)
    return tv, float(kind.likelihood(xp, yp)), int(pos.sum())


def quality(model: str, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> float:
    """Criterion Q over planes (lower is better): per-pixel TV, plus for Poisson types
    0.1 TV + mean(x - y log x), and for Gamma TV + mean(log x + y/x + (y/x)^2), on x > 0."""
    kind = noise_model(model)
    terms = [_criterion_terms(kind, x, y) for x, y in zip(xs, ys, strict=True)]
    pixels = sum(x.size for x in xs)
    tv = sum(t[0] for t in terms) / pixels
    if kind.likelihood is None:
        return tv
    like = sum(t[1] for t in terms) / max(sum(t[2] for t in terms), 1)
    return kind.tv_weight * tv + like


def _check_model(model: Noise2ScoreModel, noise: str | None, parameter: str | None) -> str:
    """The searched parameter; errors for a noise-model mismatch or an unknown parameter."""
    model.noise_params(noise=noise)  # raises for a model trained on other noise
    if model.config.anscombe:
        raise Noise2ScoreError("blind search does not apply to an Anscombe-transform model: the "
                               "transform fixes the noise (std 1) at training; train again "
                               "with other noise parameters")
    allowed = model.config.kind.searched
    if parameter is not None and parameter != allowed:
        raise Noise2ScoreError(f"a {model.config.noise} model's blind search varies {allowed}, "
                               f"not {parameter}")
    return allowed


def scaled_scores(model: Noise2ScoreModel, planes: Sequence[np.ndarray], tile: int,
                  overlap: int | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Scaled planes and their scores: one network pass per plane."""
    model.net.eval()
    ys, scores = [], []
    for plane in planes:
        y = model.to_scaled(np.asarray(plane))
        ys.append(y)
        scores.append(model.score(y, predict_plane(model.net, y, tile, overlap)))
    return ys, scores


def blind_search(model: Noise2ScoreModel, planes: Sequence[np.ndarray],
                 grid: Sequence[float] | None = None, parameter: str | None = None,
                 noise: str | None = None, max_pixels: int = MAX_PIXELS,
                 tile: int = DEFAULT_TILE, overlap: int | None = None) -> BlindResult:
    """The grid value (input units, default ``default_grid``) of the model's searched
    parameter whose Tweedie estimate minimises Q; ``noise``, if given, must be the model's."""
    start = time.perf_counter()
    parameter = _check_model(model, noise, parameter)
    values = check_grid(model, parameter, default_grid(model, parameter) if grid is None else grid)
    sample = sample_planes(planes, max_pixels)
    ys, scores = scaled_scores(model, sample, tile, overlap)
    q = sweep(model, parameter, values, ys, scores)
    best = int(np.nanargmin(q))
    return BlindResult(parameter, float(values[best]),
                       "search (" + model.config.kind.criterion + ")",
                       tuple(float(v) for v in values), tuple(float(v) for v in q),
                       time.perf_counter() - start, sum(p.size for p in sample))


def sweep(model: Noise2ScoreModel, parameter: str, values: np.ndarray,
          ys: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> np.ndarray:
    """Q for every value, from precomputed scaled planes and scores (no network pass);
    non-finite Q values become NaN, an error when none is finite."""
    base = model.noise_params()
    q = np.empty(len(values))
    for i, value in enumerate(values):
        scaled = replace(base, **{parameter: float(value)}).rescaled(model.scale)
        xs = [tweedie(y, s, scaled, model.smoothing, model.config.mixed_mode)
              for y, s in zip(ys, scores, strict=True)]
        q[i] = quality(model.config.noise, xs, ys)
    q[~np.isfinite(q)] = np.nan
    if np.all(np.isnan(q)):
        raise Noise2ScoreError("the blind search found no usable value on the grid")
    return q


def score_estimate(model: Noise2ScoreModel, planes: Sequence[np.ndarray],
                   noise: str | None = None, max_pixels: int = MAX_PIXELS,
                   tile: int = DEFAULT_TILE, overlap: int | None = None,
                   seed: int = 0) -> BlindResult:
    """The noise level read from the learned score's derivative (two passes per plane).

    Where the signal is locally flat, -1/R'(y) is the local noise variance v (plus the
    training perturbation sigma_a^2, removed here). Gaussian: sigma^2 = median(v).
    Gamma: v = y^2 / (k - 1), so 1/(k - 1) = median(v / y^2) over clearly positive y.
    R' is taken with a random +-delta per pixel; the median shrugs off edges and textures."""
    start = time.perf_counter()
    parameter = _check_model(model, noise, None)
    if not model.config.kind.score_estimable:
        raise Noise2ScoreError("the score-based estimate is implemented for Gaussian and Gamma "
                               "models; use the grid search for Poisson-type models")
    sample = sample_planes(planes, max_pixels)
    ys, scores = scaled_scores(model, sample, tile, overlap)
    rng = np.random.default_rng(seed)
    s2 = model.smoothing**2
    ratios = []
    for y, score in zip(ys, scores, strict=True):
        step = _delta(model, y)
        delta = (step * rng.choice(np.array([-1.0, 1.0], np.float32), y.shape)).astype(np.float32)
        moved = y + delta
        d_score = model.score(moved, predict_plane(model.net, moved, tile, overlap)) - score
        with np.errstate(divide="ignore", invalid="ignore"):
            v = -delta.astype(np.float64) / d_score - s2
        if model.config.kind.relative:
            keep = y > 0.1 * float(np.median(y))
            v = v[keep] / np.square(y[keep].astype(np.float64))
        ratios.append(v[np.isfinite(v)].ravel())
    v = float(np.median(np.concatenate(ratios)))
    if not v > 0:
        raise Noise2ScoreError("the learned score gives no usable noise estimate on this image")
    value = math.sqrt(v) * model.scale if parameter == "sigma" else 1.0 + 1.0 / v
    return BlindResult(parameter, value, "score estimate (two passes)",
                       seconds=time.perf_counter() - start, pixels=sum(p.size for p in sample))


def _delta(model: Noise2ScoreModel, y: np.ndarray) -> float:
    """Finite-difference step: a tenth of the training noise std (scaled intensities)."""
    cfg = model.config
    if not cfg.kind.relative:
        return 0.1 * cfg.sigma / model.scale
    return 0.1 * float(np.mean(np.abs(y))) / math.sqrt(cfg.shape)


METHODS = ("search", "score")


def find_parameter(model: Noise2ScoreModel, planes: Sequence[np.ndarray], method: str = "search",
                   grid: Sequence[float] | None = None,
                   max_pixels: int = MAX_PIXELS) -> BlindResult:
    """``blind_search`` (method 'search') or ``score_estimate`` ('score') on 2D planes."""
    if method == "search":
        return blind_search(model, planes, grid, max_pixels=max_pixels)
    if method == "score":
        if grid is not None:
            raise Noise2ScoreError("the score-based estimate takes no grid")
        return score_estimate(model, planes, max_pixels=max_pixels)
    raise Noise2ScoreError(f"unknown blind method {method!r}; choose one of {METHODS}")
