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


def tiny_model():
    """A tiny untrained Gaussian model (width 4, depth 1): files and faults, not quality."""
    import torch

    from napari_noise2score.core.config import TrainConfig
    from napari_noise2score.core.model import Noise2ScoreModel, build_network

    cfg = TrainConfig(noise="gaussian", sigma=20.0, width=4, depth=1, unshuffle=2,
                      max_steps=1, decorrelate=1, tta=False)
    torch.manual_seed(0)
    return Noise2ScoreModel(cfg, build_network(cfg).eval(), scale=255.0, final_sigma_a=0.03)


def psnr(clean: np.ndarray, x: np.ndarray, peak: float = 1.0) -> float:
    return float(10 * np.log10(peak**2 / np.mean((np.asarray(x, np.float64) - clean) ** 2)))


@pytest.fixture
def clean_stack() -> np.ndarray:
    return np.stack([smooth_image(96, s) for s in range(3)])


# ---- the reliability campaign (issue 14): outcome counts -------------------------------
#: Outcomes of one generated bad input or injected fault. The acceptable ones are a clear
#: error (one line, exit 2, or a Noise2ScoreError / napari notification) and, for a mutated
#: file that is still valid, a complete result ("accepted"); the others must stay at 0.
OUTCOMES = ("clear error", "accepted", "crash", "hang", "partial file", "code execution")
CAMPAIGN: dict[str, dict[str, int]] = {}


def record_case(category: str, outcome: str) -> str:
    """Count one case of ``category`` (see ``OUTCOMES``); returns ``outcome``.

    With N2S_CAMPAIGN_REPORT=FILE set, the counts are written there as JSON at the end of
    the session (``benchmarks/reliability.py`` prints them as a table).
    """
    assert outcome in OUTCOMES, outcome
    counts = CAMPAIGN.setdefault(category, dict.fromkeys(OUTCOMES, 0))
    counts[outcome] += 1
    return outcome


def pytest_sessionfinish(session, exitstatus) -> None:
    import json
    import os

    report = os.environ.get("N2S_CAMPAIGN_REPORT")
    if report and CAMPAIGN:
        Path(report).write_text(json.dumps(CAMPAIGN, indent=1, sort_keys=True))
