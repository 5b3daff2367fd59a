"""The one configuration object shared by widgets, npe2 commands, the CLI and model files."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .errors import Noise2ScoreError
from .estimation import NoiseEstimate
from .noise import MIXED_MODES, NOISE_TYPES, NoiseModel, NoiseParams

DEVICES = ("auto", "cpu", "cuda", "mps")
AUTO = "auto"
NETWORKS = ("plain", "conditioned")
#: Values of ``init`` besides a model file's path.
INITS = (AUTO, "pretrained", "scratch")
#: Inclusive ranges of the network and batch sizes: beyond them a network cannot be built or
#: trained in any sensible time or memory (depth 6 already needs images of 256+ pixels on a
#: side with unshuffle 2, stride 2), so a value outside is refused, and a model file that
#: declares one is damaged.
LIMITS = {"width": (1, 128), "depth": (1, 6), "unshuffle": (1, 4), "decorrelate": (1, 2),
          "patch_size": (8, 1024), "batch_size": (1, 1024)}
#: Where the score is learned for Poisson-type noise: "none", the intensities (counts) and
#: the Poisson-type Tweedie steps; "anscombe", after the generalized Anscombe transform
#: (Gaussian noise of std 1), Gaussian Tweedie there, then the exact unbiased inverse.
TRANSFORMS = ("none", "anscombe")


@dataclass
class TrainConfig:
    """Everything that defines a training run (and, once resolved, a saved model); every
    setting is checked on construction (``validate``).

    Noise parameters are in the input's own intensity units. ``None`` for a network or
    schedule field means "choose for the device and the noise model" (``resolved``); sizes
    lie in ``LIMITS``. ``decorrelate``: the pixel stride of the sub-images the score is
    learned and applied on (2 when neighbouring noise pixels correlate; ``None``: from the
    measured correlation). ``mixed_mode`` and ``tta`` (the 8-fold flip-and-turn average;
    ``None``: only up to ``inference.TTA_AUTO_PIXELS``) and ``wiener`` (the nonlocal Wiener
    step after Tweedie's where the noise there is white Gaussian, ``wiener.py``; ``None``: by
    the same size rule) act at denoising and can be changed on a trained model
    (``Noise2ScoreModel.with_options``). ``init``: ``pretrained`` (the
    shipped prior, ``prior.py``), ``scratch``, a model file, or ``auto`` (the prior when the
    noise is in its range). ``network``: ``plain``, or ``conditioned`` (the prior's network,
    kept by its fine-tuned models). ``transform`` (``TRANSFORMS``): where Poisson-type noise
    is learned; ``None`` chooses at training (``choose_transform``), stored in the model.
    ``per_plane_noise`` (set when the noise is estimated): a plane whose noise the model's
    parameters overstate takes its own estimate on the Anscombe route (``planewise.py``).
    """

    noise: str = AUTO
    sigma: float | None = None
    gain: float | None = None
    shape: float | None = None
    offset: float = 0.0
    mixed_mode: str = "gaussian-then-poisson"
    transform: str | None = None
    tta: bool | None = None
    wiener: bool | None = None
    axes: str | None = None
    max_seconds: float | None = 120.0
    max_steps: int | None = None
    patch_size: int = 64
    batch_size: int = 16
    learning_rate: float = 1e-3
    antithetic: bool = True
    width: int | None = None
    depth: int | None = None
    unshuffle: int | None = None
    decorrelate: int | None = None
    sigma_a_max: float | None = None
    sigma_a_min: float | None = None
    seed: int = 0
    device: str = "auto"
    init: str = AUTO
    network: str = "plain"
    per_plane_noise: bool = False

    def __post_init__(self) -> None:
        self.validate()  # every TrainConfig (and every ``replace`` of one) is valid

    def with_estimate(self, estimate: NoiseEstimate) -> TrainConfig:
        """A copy whose noise model and parameters are those of ``estimate`` (and, unless set,
        the decorrelating stride its noise correlation calls for)."""
        return replace(self, noise=estimate.model, sigma=estimate.sigma, gain=estimate.gain,
                       shape=estimate.shape, offset=estimate.offset,
                       decorrelate=self.decorrelate or estimate.stride, per_plane_noise=True)

    @property
    def noise_params(self) -> NoiseParams:
        return NoiseParams(self.noise, self.sigma, self.gain, self.shape)

    @property
    def kind(self) -> NoiseModel | None:
        """The noise family (None while the noise is "auto", to be estimated)."""
        return NOISE_TYPES.get(self.noise) if isinstance(self.noise, str) else None

    @property
    def poisson_type(self) -> bool:
        return self.kind is not None and self.kind.counts

    @property
    def anscombe(self) -> bool:
        """Whether the score is learned after the generalized Anscombe transform."""
        return self.transform == "anscombe" and self.poisson_type

    @property
    def count_domain(self) -> bool:
        """Whether the score is learned in photon counts (Poisson-type noise, no transform)."""
        return self.poisson_type and not self.anscombe

    def validate(self) -> TrainConfig:
        """Raise a clear error for any impossible setting; return self (``noise="auto"``
        needs no parameter: they are estimated from the data at training)."""
        if self.noise != AUTO:
            self.noise_params.validate()
        if not math.isfinite(self.offset):
            raise Noise2ScoreError(f"offset must be a finite number, got {self.offset}")
        for name, value, known in (("mixed mode", self.mixed_mode, MIXED_MODES),
                                   ("transform", self.transform, (None, *TRANSFORMS))):
            if value not in known:
                raise Noise2ScoreError(f"unknown {name} {value!r}; choose one of "
                                       f"{', '.join(k for k in known if k is not None)}")
        if self.transform == "anscombe" and not (self.poisson_type or self.noise == AUTO):
            raise Noise2ScoreError("the Anscombe transform is for poisson and poisson-gaussian "
                                   f"noise, not {self.noise}")
        if self.max_seconds is None and self.max_steps is None:
            raise Noise2ScoreError("give a training budget: max_seconds, max_steps or both")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise Noise2ScoreError(f"max_seconds must be > 0, got {self.max_seconds}")
        if self.max_steps is not None and self.max_steps < 1:
            raise Noise2ScoreError(f"max_steps must be >= 1, got {self.max_steps}")
        for name, (lo, hi) in LIMITS.items():
            value = getattr(self, name)
            whole = isinstance(value, int) and not isinstance(value, bool)
            if value is not None and not (whole and lo <= value <= hi):
                raise Noise2ScoreError(f"{name} must be an integer from {lo} to {hi}, "
                                       f"got {value!r}")
        if not self.learning_rate > 0:
            raise Noise2ScoreError(f"learning_rate must be > 0, got {self.learning_rate}")
        lo, hi = self.sigma_a_min, self.sigma_a_max
        if (lo is not None and lo <= 0) or (hi is not None and hi <= 0):
            raise Noise2ScoreError("sigma_a_min and sigma_a_max must be > 0")
        if lo is not None and hi is not None and lo > hi:
            raise Noise2ScoreError("sigma_a_min must not exceed sigma_a_max")
        if self.network not in NETWORKS:
            raise Noise2ScoreError(f"unknown network {self.network!r}; choose one of {NETWORKS}")
        if not isinstance(self.init, str) or not self.init:
            raise Noise2ScoreError("init must be 'auto', 'pretrained', 'scratch' or a model file")
        if self.device.split(":")[0] not in DEVICES:
            raise Noise2ScoreError(f"unknown device {self.device!r}; choose one of {DEVICES}")
        return self

    def resolved(self, device_type: str, noise_std: float) -> TrainConfig:
        """A copy with every automatic field filled in: ``device_type`` ('cpu', 'cuda',
        'mps') sizes the network; ``noise_std``, the typical noise std in the training
        domain, sets the sigma_a schedule: from the noise std to a third of it, where a short
        training still learns the score well (docs/algorithm.md); in photon counts sigma_a
        never goes below 1.0 to 0.5 counts (on the count lattice a smaller one spoils
        Tweedie, ALGORITHM.md 2)."""
        big = device_type != "cpu"
        net = {"width": 48, "depth": 4, "unshuffle": 1} if big else {
            "width": 24, "depth": 3, "unshuffle": 2}
        sched = {"sigma_a_max": noise_std, "sigma_a_min": noise_std / 3}
        if self.count_domain:
            sched = {"sigma_a_max": max(1.0, noise_std), "sigma_a_min": max(0.5, noise_std / 3)}
        net["decorrelate"] = 1  # unless the data's noise correlation asked for more
        filled = {k: v for k, v in {**net, **sched}.items() if getattr(self, k) is None}
        return replace(self, **filled)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, rejecting unknown keys with a clear message."""
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise Noise2ScoreError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**values)


#: Fields no front end sets for training (tuned internals, and ``tta`` and ``wiener``,
#: denoising options), and why: the CLI's and the npe2 command's training options are the
#: others (the Train widget hides these and a few more, ``widgets.train_widget.NOT_SHOWN``).
NOT_EXPOSED = {
    "tta": "a denoising option, set where denoising is",
    "wiener": "a denoising option, set where denoising is",
    "antithetic": "a variance-reduction detail of the loss; always on",
    "unshuffle": "sized for the device (TrainConfig.resolved)",
    "sigma_a_max": "the annealing schedule follows the noise level (TrainConfig.resolved)",
    "sigma_a_min": "the annealing schedule follows the noise level (TrainConfig.resolved)",
    "network": "follows init: fine-tuning the prior keeps its noise-conditioned network",
    "per_plane_noise": "set when the noise is estimated (core/planewise.py)",
}
TRAIN_OPTIONS = tuple(f.name for f in fields(TrainConfig) if f.name not in NOT_EXPOSED)
