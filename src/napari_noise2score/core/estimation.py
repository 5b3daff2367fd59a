"""Noise estimation from the noisy data alone: Gaussian, Poisson-Gaussian (with offset), Gamma.

Method: the 2x2 diagonal Haar detail d = (y00 - y01 - y10 + y11) / 2 cancels any locally
constant or linear signal, so E[d^2] is the noise variance at the block's level. Averaging
d^2 and the block means over windows gives (local mean, local noise variance) pairs; windows
with structure (horizontal/vertical detail far above the diagonal one) are dropped, and a
robust fit of variance against mean gives the noise model:

- Gaussian:          var = sigma^2
- Poisson-Gaussian:  var = gain * (mean - offset) + sigma^2
- Gamma:             var = mean^2 / k

The same statistic taken on pixels two apart measures how much neighbouring noise pixels
correlate (camera pixel cross-talk, demosaicing, resampling), which Tweedie's formula and
blind-spot methods assume away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from .errors import Noise2ScoreError
from .layout import sample_windows
from .noise import NoiseParams

WINDOW = 8  # window side, in 2x2 blocks (16 x 16 pixels)
MIN_WINDOWS = 30
#: The data's maximum counts as a saturation level when at least this share of the pixels
#: sits on it: a window holding one such pixel is left out (clipping shrinks its variance
#: long before its mean nears the maximum).
SATURATED_SHARE = 5e-4
#: Above this neighbour correlation the noise is treated as correlated: estimated again, and
#: denoised, on sub-images of every second pixel (lag-2 correlation is far smaller).
CORRELATED = 0.2


@dataclass(frozen=True)
class NoiseEstimate:
    """An estimated noise model, in the data's intensity units, with how much to trust it."""

    model: str
    sigma: float | None
    gain: float | None
    shape: float | None
    offset: float
    correlation: float
    quality: float
    n_windows: int
    note: str = ""

    @property
    def stride(self) -> int:
        """Pixel stride of decorrelated sub-images to denoise on (1: noise is independent)."""
        return 2 if self.correlation > CORRELATED else 1

    @property
    def params(self) -> NoiseParams:
        return NoiseParams(self.model, self.sigma, self.gain, self.shape)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        parts = [f"noise model: {self.model}"] + [
            f"{name} = {getattr(self, name):.4g}" for name in ("gain", "sigma", "shape")
            if getattr(self, name) is not None]
        if self.offset:
            parts.append(f"offset = {self.offset:.4g}")
        parts.append(f"neighbour correlation = {self.correlation:.2f}")
        if self.stride > 1:
            parts.append(f"correlated: learned on {self.stride}x{self.stride} sub-images")
        parts.append(f"fit quality = {self.quality:.2f} ({self.n_windows} smooth windows)")
        text = ", ".join(parts)
        return f"{text}; {self.note}" if self.note else text


def _block_stats(plane: np.ndarray, lag: int,
                 ceiling: float | None = None) -> tuple[np.ndarray, ...]:
    """Per-window mean, noise variance (diagonal detail), structure and the number of its
    pixels at or above ``ceiling`` (a saturation level; None: 0), at pixel lag."""
    p = plane.astype(np.float64)
    h = (p.shape[0] // (2 * lag)) * 2 * lag
    w = (p.shape[1] // (2 * lag)) * 2 * lag
    p = p[:h, :w]
    # four pixels per block, ``lag`` apart
    a, b, c, d = (_sub(p, lag, i, j) for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
    mean = (a + b + c + d) / 4
    diag = ((a - b - c + d) / 2) ** 2
    struct = (((a + b - c - d) / 2) ** 2 + ((a - b + c - d) / 2) ** 2) / 2
    at_ceiling = (sum((x >= ceiling).astype(np.float64) for x in (a, b, c, d))
                  if ceiling is not None else np.zeros_like(mean))
    wh, ww = mean.shape[0] // WINDOW, mean.shape[1] // WINDOW

    def pool(x: np.ndarray) -> np.ndarray:
        x = x[: wh * WINDOW, : ww * WINDOW]
        return x.reshape(wh, WINDOW, ww, WINDOW).mean(axis=(1, 3)).ravel()

    return pool(mean), pool(diag), pool(struct), pool(at_ceiling) * WINDOW * WINDOW


def _sub(p: np.ndarray, lag: int, i: int, j: int) -> np.ndarray:
    """Pixels (i*lag, j*lag) of every 2lag x 2lag block, taken from its top-left lag x lag."""
    return p[i * lag :: 2 * lag, j * lag :: 2 * lag]


def _window_stats(planes: Sequence[np.ndarray], lag: int,
                  ceiling: float | None = None) -> tuple[np.ndarray, ...]:
    stats = [_block_stats(p, lag, ceiling) for p in planes
             if min(p.shape) >= 2 * lag * WINDOW]
    if not stats:
        raise Noise2ScoreError(f"the image is too small to estimate noise from (at least "
                               f"{2 * lag * WINDOW} x {2 * lag * WINDOW} pixels)")
    return tuple(np.concatenate(s) for s in zip(*stats, strict=True))


def _flat_windows(mean: np.ndarray, var: np.ndarray, struct: np.ndarray, valid: np.ndarray,
                  excess: float = 1.0) -> np.ndarray:
    """Windows without structure: horizontal/vertical detail close to the predicted noise.
    Selecting on ``struct`` (not on ``var``, an independent Haar component) keeps the noise
    variances of the chosen windows unbiased. The prediction comes from a first robust fit
    over all windows (bin medians shrug off the minority of windows with edges)."""
    keep = valid.copy()
    for _ in range(2):
        if keep.sum() < MIN_WINDOWS:
            break
        m, v, n = _binned(mean[keep], var[keep])
        if len(m) < 2:
            break
        predicted = np.interp(mean, m, v)
        keep = valid & (struct < 1.5 * excess * predicted)
    return keep


def _binned(mean: np.ndarray, var: np.ndarray, n_bins: int = 16) -> tuple[np.ndarray, ...]:
    """Median noise variance in bins of equal window count along the mean."""
    edges = np.unique(np.quantile(mean, np.linspace(0, 1, n_bins + 1)))
    idx = np.clip(np.digitize(mean, edges[1:-1]), 0, len(edges) - 2)
    m, v, n = [], [], []
    for k in range(len(edges) - 1):
        sel = idx == k
        if sel.sum() >= 5:
            m.append(np.median(mean[sel]))
            # median of a mean of 64 squares is ~1 % below its mean: correct it
            v.append(np.median(var[sel]) / (1 - 2 / (9 * WINDOW * WINDOW)) ** 3)
            n.append(sel.sum())
    return np.array(m), np.array(v), np.array(n, dtype=np.float64)


def _weighted_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, design: str) -> tuple:
    """Weighted least squares: 'affine' y = a x + b, 'square' y = c x^2, 'constant' y = b."""
    cols = {"affine": [x, np.ones_like(x)], "square": [x * x],
            "constant": [np.ones_like(x)]}[design]
    A = np.stack(cols, axis=1) * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)
    pred = np.stack(cols, axis=1) @ coef
    # quality: 1 minus the weighted relative misfit of the binned variances
    misfit = np.sqrt(np.sum(w * (y - pred) ** 2) / np.sum(w * pred**2 + 1e-30))
    return coef, float(np.clip(1 - misfit, 0.0, 1.0)), pred


def estimate_noise(images: np.ndarray | Sequence[np.ndarray], max_planes: int = 16,
                   fallback: bool = False) -> NoiseEstimate:
    """Estimate the noise model and its parameters from noisy 2D planes (or a stack).

    Correlated noise (see ``CORRELATED``) is estimated again on sub-images of every second
    pixel, where the pixel variances are no longer hidden by the correlation. With too few
    flat regions the estimate fails with a clear error, or, with ``fallback``, assumes
    Gaussian noise with a robust sigma and says so in its note (quality 0)."""
    if isinstance(images, np.ndarray):
        images = [images]
    planes = _sample_planes(images, max_planes)
    try:
        best = _estimate(planes)
    except Noise2ScoreError as exc:
        if not fallback:
            raise
        return fallback_estimate(planes, str(exc))
    if best.stride > 1:
        sub = [p[i::2, j::2] for p in planes for i in range(2) for j in range(2)]
        try:
            again = _estimate(sub)
        except Noise2ScoreError:
            return best
        note = "; ".join(n for n in (again.note, "estimated on 2x2 sub-images") if n)
        best = replace(again, correlation=best.correlation, note=note)
    return best


def fallback_estimate(planes: Sequence[np.ndarray], reason: str) -> NoiseEstimate:
    """Gaussian noise whose sigma is the median absolute diagonal Haar detail (robust to
    edges), for images the full estimate cannot read; the note tells the user to override."""
    details = []
    for p in planes:
        h, w = p.shape[0] // 2 * 2, p.shape[1] // 2 * 2
        if h and w:
            q = p[:h, :w].astype(np.float64)
            a, b, c, d = (_sub(q, 1, i, j) for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
            details.append(((a - b - c + d) / 2).ravel())
    d = np.concatenate(details) if details else np.zeros(0)
    sigma = 1.4826 * float(np.median(np.abs(d))) if d.size else 0.0
    if not sigma > 0:
        raise Noise2ScoreError(f"{reason} (and no noise to measure at all)")
    note = (f"fallback: {reason}; Gaussian noise assumed, sigma from the median absolute "
            "wavelet detail: give the noise model and parameters to override")
    return NoiseEstimate("gaussian", sigma, None, None, 0.0, 0.0, 0.0, int(d.size), note)


def _sample_planes(images, max_planes: int) -> list[np.ndarray]:
    """At most ``max_planes`` evenly spaced, finite 2D planes of the images."""
    planes = []
    for image in images:
        image = np.asarray(image)
        if image.ndim < 2:
            raise Noise2ScoreError("noise estimation needs 2D images")
        planes.extend(image.reshape((-1,) + image.shape[-2:]))
    if not planes:
        raise Noise2ScoreError("no image to estimate noise from")
    windows = sample_windows([p.shape for p in planes], max_planes, spread=False)
    planes = [planes[i] for i, _, _ in windows]  # every n-th plane, from the first
    if any(not np.all(np.isfinite(p)) for p in planes):
        raise Noise2ScoreError("the image contains NaN or infinite values")
    return planes


def saturation_level(planes: Sequence[np.ndarray]) -> float | None:
    """The planes' maximum where it is a saturation level (``SATURATED_SHARE``), else None."""
    hi = max(float(p.max()) for p in planes)
    on = sum(int(np.count_nonzero(p == hi)) for p in planes)
    return hi if on >= SATURATED_SHARE * sum(p.size for p in planes) else None


def _estimate(planes: Sequence[np.ndarray]) -> NoiseEstimate:
    """The best-fitting noise model of the planes' smooth windows."""
    ceiling = saturation_level(planes)
    mean, var, struct, saturated = _window_stats(planes, 1, ceiling)
    # saturated or clipped windows carry no noise information
    lo, hi = min(float(p.min()) for p in planes), max(float(p.max()) for p in planes)
    span = hi - lo
    valid = ((mean > lo + 0.002 * span) & (mean < hi - 0.02 * span) & (var > 0)
             & (saturated == 0))
    integer = all(np.issubdtype(p.dtype, np.integer) for p in planes)
    # correlated noise lifts the horizontal/vertical detail above the diagonal one: try the
    # strict flatness test and one relaxed by the typical excess; keep the better fit
    excess = float(np.clip(np.median(struct[valid] / var[valid]), 1.0, 4.0)) if valid.any() else 1
    fits = []
    for factor in sorted({1.0, excess}):
        keep = _flat_windows(mean, var, struct, valid, factor)
        if keep.sum() >= MIN_WINDOWS:
            fits.append(_fit(planes, mean, var, keep, lo, integer, ceiling))
    if not fits:
        raise Noise2ScoreError(f"too few smooth, unsaturated regions to estimate the noise from "
                               f"({len(mean)} windows looked at); give the noise parameters "
                               "yourself")
    return max(fits, key=lambda e: e.quality)


def _fit(planes, mean, var, keep, lo: float, integer: bool,
         ceiling: float | None = None) -> NoiseEstimate:
    """The noise model that best explains the chosen windows' variance against their mean."""
    m, v, n = _binned(mean[keep], var[keep])
    n_win = int(keep.sum())
    if len(m) < 3:
        return _gaussian(float(np.median(var[keep])), 0.0, 0.0, n_win,
                         "too little intensity range to tell noise models apart")
    correlation = _correlation(planes, m, v, ceiling)
    # correlated noise hides from the 1-pixel detail: rescale by the lag-2 ratio
    inflate = 1 / max(1 - 2 * correlation, 0.2) if correlation > 0.05 else 1.0
    v = v * inflate
    w = n / np.maximum(v, 1e-12) ** 2
    (a, b), q_affine, _ = _weighted_fit(m, v, w, "affine")
    (c,), q_square, _ = _weighted_fit(m, v, w, "square")
    level = float(np.median(mean[keep]))
    if q_square > q_affine + 0.02 and c > 0 and a * level > 0.5 * max(b, 0):
        return NoiseEstimate("gamma", None, None, float(1 / c), 0.0, correlation, q_square,
                             n_win)
    if a <= 0 or a * max(level - lo, 0) < 0.1 * max(b, 1e-12):
        q_const = _weighted_fit(m, v, w, "constant")[1]
        return _gaussian(float(np.average(v, weights=n)), correlation, q_const, n_win, "")
    # var = a (mean - offset) + sigma^2. The offset is the dark level (the darkest flat
    # windows) and sigma^2 the noise variance measured there: signal-free pixels show the
    # read noise alone. (Where nothing is signal-free, the faint background counts as
    # offset, and its shot noise as read noise: the variance function stays right.)
    dark = keep & (mean <= np.quantile(mean[keep], 0.05))
    offset = float(np.median(mean[dark]))
    read2 = float(np.median(var[dark])) / (1 - 2 / (9 * WINDOW * WINDOW)) ** 3 * inflate
    note = "offset = dark level of the image"
    sigma = math.sqrt(max(read2, 1 / 12 if integer else 0.0, 1e-12))
    return NoiseEstimate("poisson-gaussian", sigma, float(a), None, offset, correlation,
                         q_affine, n_win, note)


def _gaussian(var: float, correlation: float, quality: float, n: int, note: str) -> NoiseEstimate:
    return NoiseEstimate("gaussian", math.sqrt(max(var, 1e-12)), None, None, 0.0, correlation,
                         quality, n, note)


def _correlation(planes: Sequence[np.ndarray], m1: np.ndarray, v1: np.ndarray,
                 ceiling: float | None = None) -> float:
    """Neighbour correlation of the noise: 1-pixel vs 2-pixel diagonal detail, flat regions
    (unsaturated ones, as for the 1-pixel detail)."""
    try:
        mean2, var2, struct2, saturated2 = _window_stats(planes, 2, ceiling)
    except Noise2ScoreError:
        return 0.0
    keep = _flat_windows(mean2, var2, struct2, (var2 > 0) & (saturated2 == 0))
    if keep.sum() < MIN_WINDOWS:
        return 0.0
    m2, v2, _ = _binned(mean2[keep], var2[keep])
    if len(m2) < 2:
        return 0.0
    v2_at_m1 = np.interp(m1, m2, v2)
    ratio = float(np.median(v1 / np.maximum(v2_at_m1, 1e-12)))
    # var(d_1) = v (1 - 2 rho) for neighbour correlation rho along rows and columns
    return float(np.clip((1 - ratio) / 2, 0.0, 0.95))
