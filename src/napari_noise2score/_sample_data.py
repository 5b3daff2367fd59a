"""A synthetic fluorescence-like noisy stack, made on the fly (no download)."""

from __future__ import annotations

import numpy as np

SAMPLE_GAIN = 2.0  # intensity of one photon count
SAMPLE_READ_SIGMA = 3.0  # camera read noise, same units


def clean_sample(shape: tuple[int, int, int] = (4, 256, 256), seed: int = 0) -> np.ndarray:
    """Cells and filaments slowly drifting over ``shape[0]`` frames; float32, background 8."""
    rng = np.random.default_rng(seed)
    frames, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.full(shape, 8.0, dtype=np.float32)
    n_cells = max(4, h * w // 4000)
    cells = rng.uniform([0, 0, 4, 15], [h, w, 14, 80], size=(n_cells, 4))
    drift = rng.normal(0, 1.0, size=(n_cells, 2))
    n_fil = max(2, h * w // 20000)
    fil = rng.uniform([0, 0, 0.01, 0, 15], [h, w, 0.05, 2 * np.pi, 50], size=(n_fil, 5))
    for t in range(frames):
        img = out[t]
        for (cy, cx, r, amp), (dy, dx) in zip(cells, drift, strict=True):
            cy, cx = cy + t * dy, cx + t * dx
            d2 = (yy - cy) ** 2 + (xx - cx) ** 2
            img += amp * np.exp(-d2 / (2 * r * r))
            img += 0.8 * amp * np.exp(-d2 / (2 * (0.3 * r) ** 2))  # nucleus
        for y0, x0, freq, phase, amp in fil:
            path = y0 + 25 * np.sin(freq * xx + phase + 0.05 * t)
            img += amp * np.exp(-((yy - path) ** 2) / 2.0) * (np.abs(xx - x0) < w / 3)
    return out


def noisy_sample(clean: np.ndarray, seed: int = 1) -> np.ndarray:
    """Poisson-Gaussian camera noise on ``clean`` (float32, not clipped)."""
    rng = np.random.default_rng(seed)
    shot = SAMPLE_GAIN * rng.poisson(clean / SAMPLE_GAIN)
    return (shot + SAMPLE_READ_SIGMA * rng.standard_normal(clean.shape)).astype(np.float32)


def make_sample_layers() -> list[tuple]:
    """napari sample data: the noisy stack (picked first by the widgets), and its hidden
    clean reference."""
    clean = clean_sample()
    noisy = noisy_sample(clean)
    meta = {"gain": SAMPLE_GAIN, "read_sigma": SAMPLE_READ_SIGMA}
    return [(noisy, {"name": "noisy sample", "metadata": meta}, "image"),
            (clean, {"name": "clean reference", "visible": False, "metadata": meta}, "image")]


def two_photon_like(clean: np.ndarray, photons: float = 30.0, gain: float = 8.5,
                    read: float = 11.0, offset: float = 22.0, seed: int = 0,
                    spread: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A two-photon-like 8-bit capture of ``clean``, and its exact expected value.

    ``clean`` (non-negative) is scaled to at most ``photons`` counts per pixel; the capture
    is the photons' amplitudes + N(offset, read^2), rounded and clipped to 0..255 (uint8).
    Each photon adds ``gain`` grey levels, or with ``spread`` (k >= 1) a Gamma(k, gain / k)
    amplitude: a photomultiplier's broad single-photon response (variance per photon
    gain^2 (1 + 1/k)). The reference is E[capture | clean] (float64), what an average of
    many captures tends to, clipping included."""
    from scipy.special import ndtr
    from scipy.stats import gamma, poisson

    if spread is not None and spread < 1:
        raise ValueError("spread (the Gamma shape of one photon's amplitude) must be >= 1")
    clean = np.asarray(clean, dtype=np.float64)
    lam = clean * (photons / max(float(clean.max()), 1e-12))
    rng = np.random.default_rng(seed)
    counts = rng.poisson(lam)
    if spread is None:
        amplitude = gain * counts
    else:
        shape = np.maximum(counts * spread, 1e-12)
        amplitude = np.where(counts > 0, rng.gamma(shape, gain / spread), 0.0)
    y = amplitude + offset + read * rng.standard_normal(lam.shape)
    noisy = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    # E[clip(round(y))] = sum over grey levels g = 1..255 of P(y >= g - 1/2): per
    # amplitude a, S(a) = sum_g Phi((a + offset - g + 1/2) / read); per count k, S averaged
    # over the amplitude's distribution; then mixed by Poisson(k; lam)
    levels, inverse = np.unique(lam, return_inverse=True)
    kmax = int(photons + 10 * np.sqrt(photons) + 10)
    k = np.arange(kmax + 1)
    thresholds = np.arange(1, 256) - 0.5

    def total(a: np.ndarray) -> np.ndarray:
        return ndtr((a[..., None] + offset - thresholds) / read).sum(axis=-1)

    if spread is None:
        tail = total(gain * k.astype(np.float64))
    else:  # amplitudes on a grid up to where the capture surely saturates
        top = 255.0 - offset + 8 * read
        edges = np.linspace(0.0, top, 1501)
        cdf = gamma.cdf(edges[None, :], np.maximum(k[1:, None] * spread, 1e-12),
                        scale=gain / spread)
        weights = np.diff(cdf, axis=1)
        weights[:, -1] += 1.0 - cdf[:, -1]  # beyond the grid: saturated anyway
        tail = np.concatenate([total(np.zeros(1)),
                               weights @ total((edges[:-1] + edges[1:]) / 2)])
    expected = poisson.pmf(k[None, :], levels[:, None]) @ tail
    return noisy, expected[inverse].reshape(lam.shape)
