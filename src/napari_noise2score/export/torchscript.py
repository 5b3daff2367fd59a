"""The whole denoiser as one TorchScript module, built from small pieces that mirror
``core.inference.denoise_plane`` step by step:

    to_scaled (offset and scale, or the generalized Anscombe transform) -> network (padded
    to its multiple; optional 8-fold average; the noise-level channel of a conditioned
    network) -> preconditioned score -> Tweedie step (per noise model and mixed mode, or
    Gaussian after the Anscombe transform) -> from_scaled (or the exact unbiased inverse)
    -> local mean, in input units

Every piece is a scriptable ``nn.Module`` holding its numbers as plain attributes, so a new
route is one more piece. ``denoiser_spec`` turns a trained model into the constructor
arguments of ``ExportedDenoiser`` (JSON numbers only: they are also the architecture kwargs
of the package's state-dict weights) and refuses, with one line, any configuration these
pieces do not reproduce exactly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.anscombe import D_MIN
from ..core.config import TrainConfig
from ..core.errors import ExportError
from ..core.inference import MEAN_RADIUS
from ..core.model import Noise2ScoreModel
from ..core.network import ScoreUNet
from ..core.noise import _MAX_LOG_STEP, MIXED_MODES, NOISE_TYPES
from ..core.prior import COND_REF
from ..core.score import LEVEL_BOX, training_domain

#: TrainConfig fields whose effect on denoising the pieces reproduce, or that do not act at
#: denoising at all. A field outside this set (a newer plugin's option) is refused unless it
#: has its default value, so an export never silently drops a step.
HANDLED_FIELDS = frozenset({
    "noise", "sigma", "gain", "shape", "offset", "mixed_mode", "tta", "axes", "width", "depth",
    "unshuffle", "decorrelate", "max_seconds", "max_steps", "patch_size", "batch_size",
    "learning_rate", "antithetic", "sigma_a_max", "sigma_a_min", "seed", "device",
    "init",  # where training started: the trained network is what is exported
    "wiener",  # not exported: the module is the model's denoising without the Wiener step
    "transform",  # "none": Affine pieces; "anscombe": AnscombeForward / InverseAnscombe
    "network",  # "plain": ScriptUNet; "conditioned": ScriptUNet with the noise channel
})
#: The Gaussian kernel reach of ``preserve_local_mean`` (scipy's default truncate).
TRUNCATE = 4.0


# ---- pieces -------------------------------------------------------------------------------
class Affine(nn.Module):
    """``(x - shift) / divide``: ``Affine(offset, scale)`` is ``Noise2ScoreModel.to_scaled``."""

    def __init__(self, shift: float, divide: float) -> None:
        super().__init__()
        self.shift = float(shift)
        self.divide = float(divide)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.divide


class InverseAffine(nn.Module):
    """``x * multiply + shift``: ``Noise2ScoreModel.from_scaled``."""

    def __init__(self, shift: float, multiply: float) -> None:
        super().__init__()
        self.shift = float(shift)
        self.multiply = float(multiply)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.multiply + self.shift


class _Anscombe(nn.Module):
    """The numbers of the generalized Anscombe transform and its inverse: gain, offset,
    s^2 = (sigma / gain)^2, the intensity scale, ``D_MIN`` and sqrt(3/2)."""

    def __init__(self, gain: float, sigma: float, offset: float, scale: float) -> None:
        super().__init__()
        self.gain = float(gain)
        self.offset = float(offset)
        self.s2 = (float(sigma) / float(gain)) ** 2
        self.scale = float(scale)
        self.d_min = float(D_MIN)
        self.r = math.sqrt(1.5)


class AnscombeForward(_Anscombe):
    """``Noise2ScoreModel.to_scaled`` on the Anscombe route: ``core.anscombe.gat_forward``
    (in float64, as numpy computes it; the argument of the square root clipped at 0), then
    float32, divided by the intensity scale."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.to(torch.float64) - self.offset) / self.gain
        f = 2.0 * torch.sqrt(torch.clamp(z + 0.375 + self.s2, min=0.0))
        return f.to(torch.float32) / self.scale


class InverseAnscombe(_Anscombe):
    """``Noise2ScoreModel.from_scaled`` on the Anscombe route: times the intensity scale (in
    float32), then ``core.anscombe.gat_inverse`` in float64: the closed-form approximation
    of the exact unbiased inverse, D clamped from below at ``D_MIN``, counts clipped at 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.clamp((x * self.scale).to(torch.float64), min=self.d_min)
        d2 = d * d
        counts = (0.25 * d2 + 0.25 * self.r / d - 1.375 / d2 + 0.625 * self.r / (d2 * d)
                  - 0.125 - self.s2)
        return (self.gain * torch.clamp(counts, min=0.0) + self.offset).to(torch.float32)


class _UpStage(nn.Module):
    def __init__(self, up: nn.Module, merge: nn.Module) -> None:
        super().__init__()
        self.up = up
        self.merge = merge

    def forward(self, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([self.up(h), skip], dim=1))


class ScriptUNet(nn.Module):
    """``ScoreUNet`` with a scriptable forward (the decoder stages stored deepest first).
    With ``tau`` (a number: the total noise std in scaled intensities) it is
    ``ConditionedUNet``: a constant channel tau / COND_REF is appended to each (sub-)image
    before the first layer, and the residual is tau times the output; tau is a
    non-persistent float32 buffer, as in the plugin, so the weights' keys are unchanged."""

    def __init__(self, width: int, depth: int, unshuffle: int, stride: int,
                 tau: float | None = None) -> None:
        super().__init__()
        self.conditioned = tau is not None
        net = ScoreUNet(width, depth, unshuffle, stride, in_channels=2 if self.conditioned
                        else 1)
        self.register_buffer("tau", torch.full((1, 1, 1, 1), 1.0 if tau is None else
                                                float(tau), dtype=torch.float32),
                             persistent=False)
        self.cond_ref = float(COND_REF)
        self.depth = depth
        self.stride = stride
        self.multiple = net.multiple
        self.fold, self.head, self.down, self.pool = net.fold, net.head, net.down, net.pool
        self.decoder = nn.ModuleList(
            _UpStage(net.up[i], net.merge[i]) for i in reversed(range(depth)))
        self.tail, self.shuffle = net.tail, net.shuffle

    def load_score_unet(self, state: dict[str, torch.Tensor]) -> None:
        """Load a ``ScoreUNet`` state dict (as saved in a model file)."""
        renamed = {}
        for key, value in state.items():
            part, rest = key.split(".", 1)
            if part in ("up", "merge"):
                index, tail = rest.split(".", 1)
                key = f"decoder.{self.depth - 1 - int(index)}.{part}.{tail}"
            renamed[key] = value
        self.load_state_dict(renamed)

    def _unet(self, x: torch.Tensor) -> torch.Tensor:
        if not self.conditioned:
            return self._plain(x)
        tau = self.tau.to(x.dtype)
        cond = (tau / self.cond_ref).expand(x.shape[0], 1, x.shape[2], x.shape[3])
        return self._plain(torch.cat([x, cond], dim=1)) * tau

    def _plain(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(self.fold(x))
        skips: list[torch.Tensor] = []
        for block in self.down:
            skips.append(h)
            h = block(self.pool(h))
        i = self.depth - 1
        for stage in self.decoder:
            h = stage(h, skips[i])
            i -= 1
        return self.shuffle(self.tail(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        if s == 1:
            return self._unet(x)
        b, height, width = x.shape[0], x.shape[2], x.shape[3]
        sub = F.pixel_unshuffle(x, s).reshape(b * s * s, 1, height // s, width // s)
        out = self._unet(sub).reshape(b, s * s, height // s, width // s)
        return F.pixel_shuffle(out, s)


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``core.inference._pad_to_multiple``: bottom and right edges, reflect or replicate."""
    h, w = x.shape[-2], x.shape[-1]
    ph, pw = (multiple - h % multiple) % multiple, (multiple - w % multiple) % multiple
    if ph > 0 or pw > 0:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, [0, pw, 0, ph], mode=mode)
    return x


def _dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    x = torch.rot90(x, k % 4, [-2, -1])
    return torch.flip(x, [-1]) if k >= 4 else x


def _undo_dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    if k >= 4:
        x = torch.flip(x, [-1])
    return torch.rot90(x, -(k % 4), [-2, -1])


class NetworkOutput(nn.Module):
    """``core.inference._block_output`` on a whole (B, 1, H, W) input: padded to the
    network's multiple, cropped back; with ``tta`` averaged over the 8 flips and turns."""

    def __init__(self, unet: ScriptUNet, tta: bool) -> None:
        super().__init__()
        self.unet = unet
        self.tta = bool(tta)
        self.multiple = unet.multiple

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h, w = y.shape[-2], y.shape[-1]
        padded = _pad_to_multiple(y, self.multiple)
        if not self.tta:
            return self.unet(padded)[..., :h, :w]
        total = torch.zeros_like(padded)
        for k in range(8):
            total += _undo_dihedral(self.unet(_dihedral(padded, k)), k)
        return (total / 8)[..., :h, :w]


def _local_level(w: torch.Tensor, box: int) -> torch.Tensor:
    """``core.score.local_level`` on (B, 1, H, W)."""
    return F.avg_pool2d(w, box, stride=1, padding=box // 2, count_include_pad=False)


class GaussianVariance(nn.Module):
    """Training-domain noise variance of Gaussian noise: a constant."""

    def __init__(self, sigma_w: float, sigma_a: float) -> None:
        super().__init__()
        self.total = float(sigma_w) ** 2 + float(sigma_a) ** 2

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return torch.full_like(w, self.total)


class GammaVariance(nn.Module):
    """Gamma noise: level^2 / k (level at least 1e-3), plus sigma_a^2."""

    def __init__(self, shape: float, sigma_a: float) -> None:
        super().__init__()
        self.shape = float(shape)
        self.s2 = float(sigma_a) ** 2
        self.box = LEVEL_BOX

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _local_level(w, self.box).clamp(min=1e-3) ** 2 / self.shape + self.s2


class CountVariance(nn.Module):
    """Poisson(-Gaussian) noise in counts: level (at least 0) + 1/2 + read^2 + sigma_a^2."""

    def __init__(self, read_w: float, sigma_a: float) -> None:
        super().__init__()
        self.constant = 0.5 + float(read_w) ** 2 + float(sigma_a) ** 2
        self.box = LEVEL_BOX

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _local_level(w, self.box).clamp(min=0.0) + self.constant


class PreconditionedScore(nn.Module):
    """``Noise2ScoreModel.score``: residual / (domain * v(y / domain)) / domain."""

    def __init__(self, variance: nn.Module, domain: float) -> None:
        super().__init__()
        self.variance = variance
        self.domain = float(domain)

    def forward(self, residual: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r = residual / (self.domain * self.variance(y / self.domain))
        return r / self.domain


class GaussianTweedie(nn.Module):
    """x = y + (sigma^2 + s^2) score."""

    def __init__(self, sigma: float, smoothing: float) -> None:
        super().__init__()
        self.var = float(sigma) ** 2 + float(smoothing) ** 2

    def forward(self, y: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        return y + self.var * score


class GammaTweedie(nn.Module):
    """Gaussian part (s^2) removed, then k y1 / max(k - 1 - y1 score, 0.05 (k - 1))."""

    def __init__(self, shape: float, smoothing: float) -> None:
        super().__init__()
        self.k = float(shape)
        self.read2 = float(smoothing) ** 2

    def forward(self, y: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        y1 = y + self.read2 * score
        denom = torch.clamp((self.k - 1) - y1 * score, min=0.05 * (self.k - 1))
        return self.k * y1 / denom


class PoissonTweedie(nn.Module):
    """Poisson-type noise (gain zeta; read noise and s^2 as read2), in one of the mixed
    modes of ``core.noise.tweedie``."""

    def __init__(self, gain: float, read_sigma: float, smoothing: float, mode: str) -> None:
        super().__init__()
        if mode not in MIXED_MODES:
            raise ExportError(f"unknown mixed mode {mode!r}")
        self.zeta = float(gain)
        self.read2 = float(read_sigma) ** 2 + float(smoothing) ** 2
        self.mode = mode
        self.max_log = float(_MAX_LOG_STEP)

    def forward(self, y: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        zeta, read2 = self.zeta, self.read2
        if self.mode == "first-order":
            return y + (read2 + zeta * torch.clamp(y, min=0.0)) * score
        if self.mode == "affine":
            v = torch.clamp(zeta * y + read2, min=0.5 * (read2 + zeta * zeta))
            log_step = torch.clamp(zeta * score + zeta * zeta / (2 * v), -self.max_log,
                                   self.max_log)
            return (v * torch.exp(log_step) - read2) / zeta
        y1 = y + read2 * score
        log_step = torch.clamp(zeta * score, -self.max_log, self.max_log)
        return (y1 + zeta / 2) * torch.exp(log_step)


def gaussian_kernel(radius: float, truncate: float = TRUNCATE) -> torch.Tensor:
    """scipy.ndimage's 1D Gaussian kernel of std ``radius`` (reach int(truncate*radius+.5))."""
    reach = int(truncate * radius + 0.5)
    x = torch.arange(-reach, reach + 1, dtype=torch.float64)
    phi = torch.exp(-0.5 / (radius * radius) * x * x)
    return (phi / phi.sum()).float()


def _reflect_index(n: int, reach: int, device: torch.device) -> torch.Tensor:
    """Indices of scipy's 'reflect' extension (d c b a | a b c d | d c b a), any reach."""
    idx = torch.arange(-reach, n + reach, device=device) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


class LocalMean(nn.Module):
    """``core.inference.preserve_local_mean``: x + G * (y - x), G scipy's Gaussian filter
    (std ``radius``, mode 'reflect') along Y, then X."""

    def __init__(self, radius: float = MEAN_RADIUS) -> None:
        super().__init__()
        kernel = gaussian_kernel(radius)
        self.reach = (kernel.numel() - 1) // 2
        self.register_buffer("kernel_y", kernel.reshape(1, 1, -1, 1), persistent=False)
        self.register_buffer("kernel_x", kernel.reshape(1, 1, 1, -1), persistent=False)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        d = y - x
        h, w = d.shape[-2], d.shape[-1]
        d = torch.index_select(d, 2, _reflect_index(h, self.reach, d.device))
        d = F.conv2d(d, self.kernel_y.to(d.dtype))
        d = torch.index_select(d, 3, _reflect_index(w, self.reach, d.device))
        d = F.conv2d(d, self.kernel_x.to(d.dtype))
        return x + d


# ---- the whole denoiser -------------------------------------------------------------------
class ExportedDenoiser(nn.Module):
    """The plugin's denoising of (B, 1, H, W) planes, input units in, float32 out.

    The constructor takes ``denoiser_spec``'s numbers (noise parameters in scaled
    intensities); the weights are the network's (``ScriptUNet`` keys). ``transform=
    "anscombe"``: the generalized Anscombe transform for gain ``gat_gain`` and read noise
    ``gat_sigma`` (input units), Gaussian score and Tweedie of std ``noise_w_sigma`` there,
    then the exact unbiased inverse. ``tau`` makes the network the noise-conditioned one."""

    def __init__(self, width: int, depth: int, unshuffle: int, stride: int, offset: float,
                 scale: float, noise: str, sigma: float | None, gain: float | None,
                 shape: float | None, domain: float, sigma_a_w: float, noise_w_sigma: float,
                 smoothing: float, mixed_mode: str, tta: bool = False,
                 mean_radius: float = MEAN_RADIUS, transform: str = "none",
                 gat_gain: float | None = None, gat_sigma: float = 0.0,
                 tau: float | None = None) -> None:
        super().__init__()
        unet = ScriptUNet(width, depth, unshuffle, stride, tau)
        self.network = NetworkOutput(unet, tta)
        if transform == "anscombe":
            kind = NOISE_TYPES.get(noise)
            if kind is None or not kind.counts:
                raise ExportError(f"the Anscombe route is for Poisson-type noise, not {noise}")
            zeta = _need(gat_gain, "gain")
            self.to_scaled: nn.Module = AnscombeForward(zeta, gat_sigma, offset, scale)
            self.from_scaled: nn.Module = InverseAnscombe(zeta, gat_sigma, offset, scale)
            variance: nn.Module = GaussianVariance(noise_w_sigma, sigma_a_w)
            tweedie: nn.Module = GaussianTweedie(noise_w_sigma, smoothing)
        elif transform == "none":
            self.to_scaled = Affine(offset, scale)
            self.from_scaled = InverseAffine(offset, scale)
            variance, tweedie = _count_or_plain_steps(noise, sigma, gain, shape, sigma_a_w,
                                                      noise_w_sigma, smoothing, mixed_mode)
        else:
            raise ExportError(f"the bioimage.io export does not support transform {transform!r}")
        self.score = PreconditionedScore(variance, domain)
        self.tweedie = tweedie
        self.local_mean = LocalMean(mean_radius)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plane = x.to(torch.float32)
        y = self.to_scaled(plane)
        score = self.score(self.network(y), y)
        estimate = self.from_scaled(self.tweedie(y, score))
        return self.local_mean(plane, estimate)  # in input units, as the plugin


def _count_or_plain_steps(noise: str, sigma: float | None, gain: float | None,
                          shape: float | None, sigma_a_w: float, noise_w_sigma: float,
                          smoothing: float, mixed_mode: str) -> tuple[nn.Module, nn.Module]:
    """The variance and Tweedie pieces of the route without a transform."""
    kind = NOISE_TYPES.get(noise)
    if kind is None:
        raise ExportError(f"the bioimage.io export does not support {noise!r} noise")
    if not kind.signal_dependent:
        return (GaussianVariance(noise_w_sigma, sigma_a_w),
                GaussianTweedie(_need(sigma, "sigma"), smoothing))
    if kind.relative:
        return (GammaVariance(_need(shape, "shape"), sigma_a_w),
                GammaTweedie(_need(shape, "shape"), smoothing))
    # photon counts, with read noise when the model takes a sigma
    read = "sigma" in kind.needs
    return (CountVariance(noise_w_sigma if read else 0.0, sigma_a_w),
            PoissonTweedie(_need(gain, "gain"), _need(sigma, "sigma") if read else 0.0,
                           smoothing, mixed_mode))


def _need(value: float | None, name: str) -> float:
    if value is None:
        raise ExportError(f"the model has no {name}: it cannot be exported")
    return float(value)


def check_exportable(config: TrainConfig) -> None:
    """Raise ExportError (one line) for a configuration the pieces do not reproduce."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name not in HANDLED_FIELDS and value != f.default:
            raise ExportError(
                f"the bioimage.io export does not reproduce {f.name}={value!r} yet; export "
                f"a model trained with {f.name}={f.default!r}")
    if config.noise not in NOISE_TYPES:
        raise ExportError(f"the model's noise model is {config.noise!r}: only a trained "
                          "model (with a resolved noise model) can be exported")
    if config.count_domain and config.mixed_mode not in MIXED_MODES:
        raise ExportError(f"the bioimage.io export does not support mixed mode "
                          f"{config.mixed_mode!r}")
    if None in (config.width, config.depth, config.unshuffle):
        raise ExportError("the model's network size is not resolved: train it first")
    if config.anscombe and not config.gain > 0:
        raise ExportError("the model's Anscombe route has no gain: it cannot be exported")


def network_tau(model: Noise2ScoreModel) -> float | None:
    """The noise std a noise-conditioned network is queried at (its ``tau`` buffer, which
    the plugin's denoising uses), None for a plain network; a per-item tau is refused."""
    if not model.conditioned:
        return None
    tau = getattr(model.net, "tau", None)
    if not isinstance(tau, torch.Tensor):
        raise ExportError("the model's network has no noise channel: it cannot be exported")
    if tau.numel() != 1:
        raise ExportError(f"the model's network holds {tau.numel()} noise levels (one per "
                          "batch item): only one noise level for all planes can be exported")
    value = float(tau.detach().reshape(-1)[0].cpu())
    if not (math.isfinite(value) and value > 0):
        raise ExportError(f"the model's noise level tau is {value}: it cannot be exported")
    return value


def denoiser_spec(model: Noise2ScoreModel, tta: bool = False) -> dict[str, Any]:
    """``ExportedDenoiser``'s keyword arguments for ``model`` (plain JSON numbers)."""
    config = model.config
    check_exportable(config)
    scaled = model.noise_params().rescaled(model.scale)
    domain, noise_w = training_domain(config, model.scale)
    numbers = {"offset": config.offset, "scale": model.scale, "domain": domain,
               "sigma_a_w": model.final_sigma_a, "smoothing": model.smoothing}
    if config.anscombe:
        numbers.update(gat_gain=config.gain, gat_sigma=config.sigma or 0.0)
    for name, value in numbers.items():
        if not math.isfinite(value):
            raise ExportError(f"the model's {name} is {value}: it cannot be exported")
    return {
        "width": int(config.width), "depth": int(config.depth),
        "unshuffle": int(config.unshuffle), "stride": int(config.decorrelate or 1),
        "noise": config.noise,
        **{k: None if getattr(scaled, k) is None else float(getattr(scaled, k))
           for k in ("sigma", "gain", "shape")},
        "noise_w_sigma": float(noise_w.sigma or 0.0),
        "mixed_mode": config.mixed_mode, "tta": bool(tta), "mean_radius": float(MEAN_RADIUS),
        "transform": "anscombe" if config.anscombe else "none", "tau": network_tau(model),
        **{k: float(v) for k, v in numbers.items()},
    }


def build_denoiser(model: Noise2ScoreModel, tta: bool = False) -> ExportedDenoiser:
    """An ``ExportedDenoiser`` with ``model``'s weights, in eval mode on the CPU."""
    denoiser = ExportedDenoiser(**denoiser_spec(model, tta))
    denoiser.network.unet.load_score_unet(
        {k: v.detach().cpu().float() for k, v in model.net.state_dict().items()})
    return denoiser.eval()


def script_denoiser(model: Noise2ScoreModel, tta: bool = False) -> torch.jit.ScriptModule:
    """The whole denoiser as one TorchScript module."""
    return torch.jit.script(build_denoiser(model, tta))
