"""A trained model: network weights + configuration + intensity scale, saved as one file."""

from __future__ import annotations

import copy
import errno
import math
import os
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io.atomic import atomic_output
from .config import TrainConfig
from .errors import ModelFileError, Noise2ScoreError
from .network import ConditionedUNet, ScoreUNet
from .noise import GAUSSIAN, NoiseParams, check_applicable
from .score import from_network_units, score_from_residual, to_network_units, training_domain

FORMAT = "napari-noise2score-model"
FORMAT_VERSION = 1


def build_network(config: TrainConfig) -> ScoreUNet:
    """The score network a resolved configuration describes."""
    kind = ConditionedUNet if config.network == "conditioned" else ScoreUNet
    return kind(width=config.width, depth=config.depth, unshuffle=config.unshuffle,
                stride=config.decorrelate or 1)


def _check_finite_weights(net: ScoreUNet) -> None:
    """Refuse weights that hold NaN or infinity: they would give an all-NaN result."""
    bad = [name for name, t in net.state_dict().items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise Noise2ScoreError(f"its weights hold NaN or infinite values ({', '.join(bad[:3])})")


def package_version() -> str:
    try:
        return metadata.version("napari-noise2score")
    except Exception:  # running from a source tree that is not installed
        return "unknown"


def network_bytes(config: TrainConfig, device_type: str = "cpu") -> int:
    """Bytes of the weights of the network ``config`` describes on ``device_type`` (the
    automatic width and depth filled in), counted without allocating them."""
    cfg = config.resolved(device_type, 1.0)
    with torch.device("meta"):
        net = build_network(cfg)
    return 4 * sum(p.numel() for p in net.parameters())


def _check_numbers(payload: dict[str, Any]) -> None:
    """Raise ValueError for a stored number no trained model can have."""
    scale, sigma_a = float(payload["scale"]), float(payload["final_sigma_a"])
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"its intensity scale is {scale}, not a positive finite number")
    if not (math.isfinite(sigma_a) and sigma_a >= 0):
        raise ValueError(f"its final sigma_a is {sigma_a}, not a finite number >= 0")


def _write_failure(tmp: Path, exc: RuntimeError) -> OSError:
    """torch.save's RuntimeError for a failed write as the OSError it stands for: a full
    disk when under 1 MiB is left (torch hides the errno), else an I/O error."""
    vfs = os.statvfs(tmp.parent)
    full = vfs.f_bavail * vfs.f_frsize < 2**20
    return OSError(errno.ENOSPC if full else errno.EIO,
                   "the disk is full" if full else f"write failed ({_first_lines(exc, 1)})")


def _first_lines(exc: Exception, keep: int = 2) -> str:
    """An exception's message cut to its first ``keep`` non-empty lines (torch lists every
    mismatching weight), with how many were left out."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    more = f" (and {len(lines) - keep} more)" if len(lines) > keep else ""
    return " ".join(lines[:keep]) + more


@dataclass
class Noise2ScoreModel:
    """A score network for one noise model, with what is needed to apply it. ``scale`` is
    the input intensity that maps to 1.0 for the network, which takes scaled intensities
    and returns the score in its training domain: photon counts for Poisson-type noise
    (``domain`` = gain / scale), scaled intensities otherwise."""

    config: TrainConfig
    net: ScoreUNet
    scale: float
    final_sigma_a: float
    steps: int = 0
    seconds: float = 0.0
    version: str = ""

    def __post_init__(self) -> None:
        """A noise-conditioned network is told the noise std it denoises at: the data's
        (the model's sigma) plus the final perturbation (``prior.py``)."""
        if hasattr(self.net, "set_tau") and (self.config.sigma or self.config.anscombe):
            domain, noise_w = training_domain(self.config, self.scale)
            self.net.set_tau(math.hypot(noise_w.sigma, self.final_sigma_a) * domain)

    @property
    def conditioned(self) -> bool:
        return self.config.network == "conditioned"

    def for_noise(self, sigma: float) -> Noise2ScoreModel:
        """A copy of a noise-conditioned model for Gaussian noise of std ``sigma`` (input
        units), with its own copy of the network (whose noise channel it sets)."""
        config = replace(self.config, sigma=float(sigma))
        return replace(self, config=config, net=copy.deepcopy(self.net))

    @property
    def domain(self) -> float:
        """Scaled intensity of one unit of the training domain (one count, or 1.0)."""
        return training_domain(self.config, self.scale)[0]

    @property
    def smoothing(self) -> float:
        """Std of the training perturbation at its end, in scaled intensities."""
        return self.final_sigma_a * self.domain

    def to_scaled(self, plane: np.ndarray) -> np.ndarray:
        """Input intensities to the network's scale (offset removed, or the Anscombe
        transform), float32."""
        return to_network_units(self.config, plane) / np.float32(self.scale)

    def from_scaled(self, x: np.ndarray) -> np.ndarray:
        """The network's scale back to input intensities (offset restored, or the exact
        unbiased inverse of the Anscombe transform), float32."""
        return from_network_units(self.config, x * np.float32(self.scale))

    def tweedie_noise(self, params: NoiseParams) -> NoiseParams:
        """The noise Tweedie's step assumes, in scaled network units, for ``params`` (input
        units): Gaussian of std 1 before scaling after the Anscombe transform."""
        if self.config.anscombe:
            return NoiseParams(GAUSSIAN.name, sigma=1.0 / self.scale)
        return params.rescaled(self.scale)

    def score(self, y_scaled: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """Score d log p / dy in scaled intensities, from the network's residual at ``y_scaled``."""
        domain, noise_w = training_domain(self.config, self.scale)
        r = score_from_residual(residual, y_scaled, noise_w, domain, self.final_sigma_a)
        return r / np.float32(domain)

    def with_options(self, mixed_mode: str | None = None, tta: bool | None = None,
                     wiener: bool | None = None):
        """The same trained network, denoising with another mixed-noise mode, TTA or Wiener
        setting."""
        changes = {k: v for k, v in (("mixed_mode", mixed_mode), ("tta", tta),
                                     ("wiener", wiener)) if v is not None}
        config = replace(self.config, **changes)
        return replace(self, config=config)

    def noise_params(self, noise: str | None = None, sigma: float | None = None,
                     gain: float | None = None, shape: float | None = None) -> NoiseParams:
        """The model's noise parameters (input units), with any given value overriding."""
        cfg = self.config
        check_applicable(cfg.noise, sigma=sigma, gain=gain, shape=shape)
        if noise is not None and noise != cfg.noise:
            raise Noise2ScoreError(f"this model was trained for {cfg.noise} noise, not {noise}: "
                                   f"train a model for {noise} noise")
        if cfg.poisson_type and gain is not None and gain != cfg.gain:
            raise Noise2ScoreError("the gain of a Poisson-type model is fixed at training "
                                   f"({cfg.gain}); train a new model for gain {gain}")
        if cfg.anscombe and sigma is not None and sigma != cfg.sigma:
            raise Noise2ScoreError("the read noise of an Anscombe-transform model is fixed at "
                                   f"training ({cfg.sigma}); train a new model for read noise "
                                   f"{sigma}")
        return NoiseParams(cfg.noise, cfg.sigma if sigma is None else sigma,
                           cfg.gain if gain is None else gain,
                           cfg.shape if shape is None else shape).validate()

    def to(self, device: torch.device | str) -> Noise2ScoreModel:
        """Move the network (channels-last on the CPU, where convolutions run faster there)."""
        self.net.to(device)
        if torch.device(device).type == "cpu":
            self.net.to(memory_format=torch.channels_last)
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model atomically (``io.atomic.atomic_output``: a temporary file
        renamed when complete, with the umask's permissions; OSErrors as OutputError)."""
        path = Path(path)
        payload: dict[str, Any] = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "package_version": self.version or package_version(),
            "config": self.config.to_dict(), "scale": float(self.scale),
            "final_sigma_a": float(self.final_sigma_a), "steps": int(self.steps),
            "seconds": float(self.seconds),
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()}}
        with atomic_output(path) as tmp:
            try:
                torch.save(payload, tmp)
            except RuntimeError as exc:  # torch's zip writer reports a failed write so
                raise _write_failure(tmp, exc) from None
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Noise2ScoreModel:
        """Read a model file; a missing, corrupt or foreign file (or one whose configuration
        is out of range, or whose weights are not finite) raises ModelFileError."""
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"model file not found: {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelFileError(f"{path} is not a readable napari-noise2score model (corrupt, "
                                 f"truncated or another format): {type(exc).__name__}") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ModelFileError(f"{path} is not a napari-noise2score model file")
        version = payload.get("format_version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise ModelFileError(f"{path} is a damaged model file: its format version is "
                                 f"{str(version)[:40]!r}, not a number")
        if version > FORMAT_VERSION:
            raise ModelFileError(f"{path} was written by a newer napari-noise2score "
                                 f"({payload.get('package_version')}); upgrade the plugin to "
                                 "read it")
        try:
            config = TrainConfig.from_dict(payload["config"])
            _check_numbers(payload)
            net = build_network(config)
            net.load_state_dict(payload["state_dict"])
            _check_finite_weights(net)
            model = cls(config, net, float(payload["scale"]), float(payload["final_sigma_a"]),
                        int(payload["steps"]), float(payload["seconds"]),
                        str(payload.get("package_version", "")))
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError,
                ArithmeticError) as exc:  # what damaged contents of any type raise
            raise ModelFileError(f"{path} is a damaged model file: {_first_lines(exc)}") \
                from None
        net.eval()
        return model.to(device)
