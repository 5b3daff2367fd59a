"""Helpers shared by the test files: paths of the checkout, small synthetic images and
models, environments for subprocesses, and the reliability campaign's outcome counts.

Test files import them by name (``from helpers import smooth_image``): ``tests`` is on
pytest's ``pythonpath`` (pyproject.toml). Fixtures and hooks live in ``conftest.py``; no
test file imports another test file (``tests/core/test_structure.py`` checks it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_noise2score.core.noise import MIXED_MODES

#: The checkout: the folder holding ``tests``, ``src``, ``examples`` and ``scripts``.
ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
#: Data shared between checkouts, next to the repository (``../shared/data``).
SHARED_DATA = ROOT.parent / "shared" / "data"
#: The npe2 plugin name (dock widgets, sample data).
PLUGIN = "napari-noise2score"


# ---- images ---------------------------------------------------------------------------
def smooth_image(size: int = 96, seed: int = 0) -> np.ndarray:
    """A piecewise-smooth test image in [0.1, 0.9]: discs and a gradient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.2 + 0.3 * xx
    for _ in range(6):
        cy, cx, r, a = rng.uniform([0.1, 0.1, 0.05, 0.2], [0.9, 0.9, 0.2, 0.5])
        img = img + a * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)
    return np.clip(img, 0.1, 0.9)


def noisy_image(seed: int, size: int = 64) -> np.ndarray:
    """``smooth_image`` scaled to 0-200 with Gaussian noise of sigma 20, as uint8."""
    clean = smooth_image(size, seed) * 200
    noise = np.random.default_rng(seed).normal(0, 20, clean.shape)
    return np.clip(clean + noise, 0, 255).astype(np.uint8)


def write_images(folder: Path, n: int, size: int = 64) -> list[Path]:
    """``n`` TIFFs of ``noisy_image`` (seeds 0 to n - 1) in ``folder``: img00.tif, ..."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i:02d}.tif"
        tifffile.imwrite(p, noisy_image(i, size))
        paths.append(p)
    return paths


def psnr(clean: np.ndarray, x: np.ndarray, peak: float = 1.0) -> float:
    return float(10 * np.log10(peak**2 / np.mean((np.asarray(x, np.float64) - clean) ** 2)))


def range_psnr(clean: np.ndarray, x: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR with the clean image's range as the peak; over ``mask`` only when given."""
    peak = float(clean.max() - clean.min())
    err = np.asarray(x, np.float64) - clean
    if mask is not None:
        err = err[mask]
    return float(10 * np.log10(peak**2 / np.mean(err**2)))


# ---- models ---------------------------------------------------------------------------
#: The noise models and mixed modes an exported model must reproduce.
NOISES = [dict(noise="gaussian", sigma=10.0), dict(noise="gamma", shape=5.0),
          dict(noise="poisson", gain=2.0),
          *(dict(noise="poisson-gaussian", gain=2.0, sigma=3.0, mixed_mode=m)
            for m in MIXED_MODES)]


def tiny_model():
    """A tiny untrained Gaussian model (width 4, depth 1): files and faults, not quality."""
    import torch

    from napari_noise2score.core.config import TrainConfig
    from napari_noise2score.core.model import Noise2ScoreModel, build_network

    cfg = TrainConfig(noise="gaussian", sigma=20.0, width=4, depth=1, unshuffle=2,
                      max_steps=1, decorrelate=1, tta=False)
    torch.manual_seed(0)
    return Noise2ScoreModel(cfg, build_network(cfg).eval(), scale=255.0, final_sigma_a=0.03)


def perturbed_model(seed: int = 0, **options):
    """A tiny untrained network with random non-zero weights (so the score is not 0); on
    the Anscombe route at the scale and sigma_a of transformed values (std 1 noise)."""
    import torch

    from napari_noise2score.core.config import TrainConfig
    from napari_noise2score.core.model import Noise2ScoreModel, build_network

    torch.manual_seed(seed)
    config = TrainConfig(width=8, depth=2, unshuffle=2, offset=5.0, **options).validate()
    net = build_network(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    scale, sigma_a = (20.0, 0.02) if config.anscombe else (200.0, 0.4)
    return Noise2ScoreModel(config, net.eval(), scale=scale, final_sigma_a=sigma_a)


# ---- subprocesses ---------------------------------------------------------------------
def env_with_src(**extra: str) -> dict[str, str]:
    """This process's environment with the checkout's ``src`` first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def headless_env(**extra: str) -> dict[str, str]:
    """``env_with_src`` with no display: DISPLAY, WAYLAND_DISPLAY, QT_QPA_PLATFORM unset."""
    env = env_with_src(**extra)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        if name not in extra:
            env.pop(name, None)
    return env


# ---- the reliability campaign (issue 14): outcome counts ------------------------------
#: Outcomes of one generated bad input or injected fault. The acceptable ones are a clear
#: error (one line, exit 2, or a Noise2ScoreError / napari notification) and, for a mutated
#: file that is still valid, a complete result ("accepted"); the others must stay at 0.
OUTCOMES = ("clear error", "accepted", "crash", "hang", "partial file", "code execution")
CAMPAIGN: dict[str, dict[str, int]] = {}


def record_case(category: str, outcome: str) -> str:
    """Count one case of ``category`` (see ``OUTCOMES``); returns ``outcome``.

    With N2S_CAMPAIGN_REPORT=FILE set, the counts are written there as JSON at the end of
    the session (``conftest.pytest_sessionfinish``; ``benchmarks/reliability.py`` prints
    them as a table).
    """
    assert outcome in OUTCOMES, outcome
    counts = CAMPAIGN.setdefault(category, dict.fromkeys(OUTCOMES, 0))
    counts[outcome] += 1
    return outcome


# ---- the GUI thread's responsiveness --------------------------------------------------
class EventLoopWatch:
    """Ticks of a 10 ms QTimer on the GUI thread, with a watchdog that names each stall's
    cause: every tick re-arms ``faulthandler.dump_traceback_later``, whose C thread (it
    needs no GIL) writes every Python thread's stack when the next tick is ``dump_after``
    seconds late. The k-th dump belongs to the k-th gap longer than ``dump_after``."""

    def __init__(self, dump_after: float = 0.08) -> None:
        import tempfile

        self.dump_after = dump_after
        self.ticks: list[float] = []
        self._file = tempfile.TemporaryFile("w+")  # noqa: SIM115 - the watchdog writes to it
        self._timer = None

    def _tick(self) -> None:
        import faulthandler
        import time

        self.ticks.append(time.perf_counter())
        faulthandler.cancel_dump_traceback_later()
        faulthandler.dump_traceback_later(self.dump_after, file=self._file)

    def start(self) -> None:
        from qtpy.QtCore import QTimer

        self._timer = QTimer()
        self._timer.timeout.connect(self._tick)
        self._timer.start(10)

    def stop(self) -> None:
        import faulthandler

        self._timer.stop()
        faulthandler.cancel_dump_traceback_later()

    def stacks_at(self, gap_index: int, lines: int = 25) -> str:
        """The stacks written during gap ``gap_index`` (an index into ``np.diff(ticks)``),
        pytest's own frames left out; '' when that gap was too short to dump."""
        gaps = np.diff(np.asarray(self.ticks))
        if gaps[gap_index] <= self.dump_after:
            return ""
        k = int((gaps[:gap_index] > self.dump_after).sum())
        self._file.seek(0)
        dumps = self._file.read().split("Timeout (")[1:]
        if k >= len(dumps):
            return ""
        import threading

        sections: list[list[str]] = []
        for ln in dumps[k].splitlines()[1:]:
            if ln.startswith(("Thread 0x", "Current thread 0x")):
                sections.append([])
            if sections and not any(s in ln for s in ("site-packages/_pytest",
                                                      "site-packages/pluggy", "<frozen runpy>")):
                sections[-1].append(ln)
        main = f"{threading.main_thread().ident:#018x}"
        sections.sort(key=lambda sec: main not in sec[0])  # the GUI thread's stack first
        return "\n".join(ln for sec in sections for ln in sec[:lines])
