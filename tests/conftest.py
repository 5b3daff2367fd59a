"""Shared fixtures: small synthetic images with known noise."""

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def smooth_image(size: int = 96, seed: int = 0) -> np.ndarray:
    """A piecewise-smooth test image in [0.1, 0.9]: discs and a gradient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.2 + 0.3 * xx
    for _ in range(6):
        cy, cx, r, a = rng.uniform([0.1, 0.1, 0.05, 0.2], [0.9, 0.9, 0.2, 0.5])
        img = img + a * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)
    return np.clip(img, 0.1, 0.9)


def psnr(clean: np.ndarray, x: np.ndarray, peak: float = 1.0) -> float:
    return float(10 * np.log10(peak**2 / np.mean((np.asarray(x, np.float64) - clean) ** 2)))


@pytest.fixture
def clean_stack() -> np.ndarray:
    return np.stack([smooth_image(96, s) for s in range(3)])
