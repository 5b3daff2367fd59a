"""Choosing where torch runs: CUDA, then Apple MPS, else the CPU with all its cores."""

from __future__ import annotations

import os

import torch

from .errors import Noise2ScoreError


def available_devices() -> list[str]:
    """Device names usable on this machine, best first ('cuda', 'mps', 'cpu')."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def cpu_threads() -> int:
    """Cores this process may use (respects affinity masks and container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def select_device(name: str = "auto") -> torch.device:
    """Resolve 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' to an available torch device."""
    kind = name.split(":")[0]
    if name == "auto":
        kind = available_devices()[0]
        name = kind
    elif kind not in ("cpu", "cuda", "mps"):
        raise Noise2ScoreError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")
    elif kind not in available_devices():
        raise Noise2ScoreError(f"device {name!r} is not available here; available: "
                               f"{', '.join(available_devices())}")
    if kind == "cpu" and torch.get_num_threads() != cpu_threads():
        torch.set_num_threads(cpu_threads())
    return torch.device(name)
