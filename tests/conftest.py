"""Shared fixtures and hooks. Plain helpers (images, models, paths, subprocess
environments, the campaign's counts) are in ``helpers.py``."""

from pathlib import Path

import numpy as np
import pytest

from helpers import CAMPAIGN, noisy_image, smooth_image, tiny_model


@pytest.fixture
def clean_stack() -> np.ndarray:
    return np.stack([smooth_image(96, s) for s in range(3)])


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory) -> Path:
    """``helpers.tiny_model`` saved (untrained): files and faults, not quality."""
    return tiny_model().save(tmp_path_factory.mktemp("model") / "tiny.n2s")


@pytest.fixture(scope="module")
def trained_model_file(tmp_path_factory) -> Path:
    """A width-8 Gaussian model trained 20 steps on ``noisy_image(0)``, saved."""
    from napari_noise2score import train

    path = tmp_path_factory.mktemp("model") / "tiny.n2s"
    train(noisy_image(0), noise="gaussian", sigma=20.0, width=8, depth=2, max_steps=20,
          max_seconds=60.0, patch_size=32, batch_size=4, device="cpu").save(path)
    return path


def pytest_sessionfinish(session, exitstatus) -> None:
    """With N2S_CAMPAIGN_REPORT=FILE set, write the campaign's counts there as JSON."""
    import json
    import os

    report = os.environ.get("N2S_CAMPAIGN_REPORT")
    if report and CAMPAIGN:
        Path(report).write_text(json.dumps(CAMPAIGN, indent=1, sort_keys=True))
