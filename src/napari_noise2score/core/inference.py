"""Denoising: the network's score over large tiles, then Tweedie's formula."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from .errors import Cancelled, Noise2ScoreError
from .model import Noise2ScoreModel
from .network import ScoreUNet
from .noise import NoiseParams, tweedie
from .stack import check_image, from_planes, to_planes

DEFAULT_TILE = 1024
#: Std, in pixels, of the Gaussian over which the denoised image keeps the data's mean.
MEAN_RADIUS = 8.0


#: With ``tta=None`` (auto), inputs of at most this many pixels (all planes together) are
#: denoised with the 8-fold average, larger ones with one pass per tile: the average adds
#: 0.2-0.8 dB on the FMD images but costs 8x (docs/benchmarks.md), which is about 10 s at
#: this size on a 2-core CPU and an hour on a 2-gigapixel stack.
TTA_AUTO_PIXELS = 3 * 2**20

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom and right edges to a multiple (the pooling grid stays anchored at 0)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x


def network_output(net: ScoreUNet, planes: torch.Tensor) -> torch.Tensor:
    """Run ``net`` on (B, 1, H, W) of any size, padding to its multiple and cropping back."""
    h, w = planes.shape[-2:]
    padded = _pad_to_multiple(planes, net.multiple)
    if padded.device.type == "cpu":
        padded = padded.contiguous(memory_format=torch.channels_last)
    return net(padded)[..., :h, :w]


def receptive_radius(net: ScoreUNet) -> int:
    """An upper bound, in pixels, on how far one input pixel can change the network's output.

    Counted layer by layer (3x3 convolutions, 2x2 pools and transposed convolutions, each at
    its own resolution, then the pixel unshuffle). For the default CPU network (width 24,
    depth 3, unshuffle 2) the bound is 117 px; perturbing one pixel of a random network in
    float64 changes outputs up to 103 px away (docs/algorithm.md). A decorrelating
    ``stride`` stretches the field by that factor.
    """
    levels = [2**i for i in range(net.depth)]
    folded = 2 + sum(p + 2 * 2 * p for p in levels) + sum(p + 2 * p for p in levels)
    inner = net.unshuffle * folded + net.unshuffle - 1
    return net.stride * inner + net.stride - 1


def default_overlap(net: ScoreUNet) -> int:
    """The default tile halo: the receptive radius rounded up to the network's multiple."""
    m = net.multiple
    return -(-receptive_radius(net) // m) * m


def resolve_tta(tta: bool | None, n_pixels: int) -> bool:
    """Whether to average over the 8 flips and turns: ``tta`` when given, else (auto) only
    for inputs of at most ``TTA_AUTO_PIXELS``."""
    return bool(tta) if tta is not None else n_pixels <= TTA_AUTO_PIXELS


def describe_tta(tta: bool | None, n_pixels: int | None = None) -> str:
    """How an input is (or inputs are) denoised, in words for progress output."""
    mpx = TTA_AUTO_PIXELS / 1e6
    if tta is None and n_pixels is None:
        return (f"8-fold average over flips and turns for inputs up to {mpx:.1f} Mpx, one "
                "pass per tile above (auto; tta=True / tta=False force one)")
    used = resolve_tta(tta, n_pixels or 0)
    how = "8-fold average over flips and turns" if used else "one pass per tile"
    if tta is None:
        return f"{how} (auto: {n_pixels / 1e6:.2f} Mpx {'<=' if used else '>'} {mpx:.1f} Mpx)"
    return f"{how} (the model's or the given setting)"


def _dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 flips and quarter turns of the last two axes."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


def _undo_dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, -(k % 4), dims=(-2, -1))


def _block_output(net: ScoreUNet, block: torch.Tensor, tta: bool) -> torch.Tensor:
    """The network's output on a (1, 1, H, W) block, averaged over its 8 flips and quarter
    turns with ``tta``. The block is padded to the pooling grid first, so every transformed
    copy meets the same grid and tiled results still equal whole-plane ones."""
    h, w = block.shape[-2:]
    if not tta:
        return network_output(net, block)
    padded = _pad_to_multiple(block, net.multiple)
    total = torch.zeros_like(padded)
    for k in range(8):
        total += _undo_dihedral(network_output(net, _dihedral(padded, k)), k)
    return (total / 8)[..., :h, :w]


@torch.inference_mode()
def predict_plane(
    net: ScoreUNet,
    plane: np.ndarray,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    tta: bool = False,
) -> np.ndarray:
    """The network's output on one 2D plane, computed in tiles of ``tile`` pixels with a halo.

    Tile and halo are rounded up to the network's multiple, so every tile starts on the
    pooling grid of the whole plane: with a halo covering the receptive field (the default,
    ``default_overlap``), the result equals whole-plane inference to float tolerance.
    ``tta`` averages the output over the 8 flips and quarter turns of each tile (test-time
    augmentation: 8 forward passes, a less noisy score).
    """
    if overlap is None:
        overlap = default_overlap(net)
    if tile < 1 or overlap < 0:
        raise Noise2ScoreError("tile must be >= 1 and overlap >= 0")
    m = net.multiple
    tile, overlap = -(-tile // m) * m, -(-overlap // m) * m
    device = next(net.parameters()).device
    h, w = plane.shape
    out = np.empty((h, w), dtype=np.float32)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa = max(y0 - overlap, 0), max(x0 - overlap, 0)
            yb, xb = min(y1 + overlap, h), min(x1 + overlap, w)
            block = torch.from_numpy(np.ascontiguousarray(plane[ya:yb, xa:xb], np.float32))
            res = _block_output(net, block[None, None].to(device), tta)[0, 0].float().cpu()
            out[y0:y1, x0:x1] = res.numpy()[y0 - ya : y1 - ya, x0 - xa : x1 - xa]
    return out


def scaled_noise(model: Noise2ScoreModel, noise: NoiseParams | None = None) -> NoiseParams:
    """The noise parameters to denoise with (model's, or ``noise``), in scaled intensities."""
    params = (noise or model.noise_params()).validate()
    if params.model != model.config.noise:
        model.noise_params(noise=params.model)  # raises the mismatch error
    return model.tweedie_noise(params)


def denoise_plane(
    model: Noise2ScoreModel,
    plane: np.ndarray,
    scaled: NoiseParams,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
) -> np.ndarray:
    """Denoise one 2D plane (input units in, float32 input units out), with the model's
    mixed-noise mode and test-time augmentation setting (``model.config``).

    Every step after the network is pointwise, so denoising a region and cropping it gives
    the same pixels as denoising the whole plane, as long as the network's output agrees.
    """
    plane = np.asarray(plane)
    y = model.to_scaled(plane)
    score = model.score(y, predict_plane(model.net, y, tile, overlap, model.config.tta))
    x = model.from_scaled(tweedie(y, score, scaled, model.smoothing, model.config.mixed_mode))
    # in input units: after the Anscombe route's non-linear inverse too (docs/algorithm.md)
    out = preserve_local_mean(plane.astype(np.float32), x)
    return clip_to_range(plane, out)


def clip_to_range(plane: np.ndarray, out: np.ndarray) -> np.ndarray:
    """For integer data, the denoised value within the type's range (0..255 for uint8).

    The capture was clipped there, so its expected value (what an average of captures
    gives) lies inside too: at a saturated pixel (255) that is the denoised value, usually
    below 255, not the clipped reading itself. Keeping saturated readings cost 1.4 dB on
    synthetic two-photon captures with 0.8 % of pixels at 255 (docs/algorithm.md).
    """
    if np.issubdtype(plane.dtype, np.integer):
        info = np.iinfo(plane.dtype)
        np.clip(out, info.min, info.max, out=out)
    return out


def preserve_local_mean(y: np.ndarray, x: np.ndarray, radius: float = MEAN_RADIUS) -> np.ndarray:
    """Give ``x`` the local mean of ``y``: x + G * (y - x), G a Gaussian of std ``radius``.

    A posterior mean is unbiased on average (E[E[x | y]] = E[x] = E[y] for zero-mean noise),
    but a short-trained score and the approximations of the Poisson steps are not: on real
    data the estimate drifts by a few grey levels in dark backgrounds. Restoring the local
    mean of the data removes that drift and adds only noise averaged over ~(2 radius)^2
    pixels. The filter reaches 4 * radius pixels, well inside the default tile halo.
    """
    return (x + gaussian_filter((y - x).astype(np.float32), radius, mode="reflect")).astype(
        np.float32)


def denoise_array(
    model: Noise2ScoreModel,
    data: np.ndarray,
    axes: str | None = None,
    noise: NoiseParams | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    progress: ProgressFn | None = None,
    stop: StopFn | None = None,
) -> np.ndarray:
    """Denoise ``data`` (2D, or a stack of 2D planes along ``axes``) into float32, same units.

    ``noise`` overrides the model's noise parameters (same noise model, input units).
    ``stop`` is polled between planes; when it returns True, ``Cancelled`` is raised.
    """
    data = np.asarray(data)
    check_image(data)
    planes, axes = to_planes(data, axes)
    scaled = scaled_noise(model, noise)
    model = model.with_options(tta=resolve_tta(model.config.tta, planes.size))
    model.net.eval()
    out = np.empty(planes.shape, dtype=np.float32)
    for i, plane in enumerate(planes):
        if stop is not None and stop():
            raise Cancelled("denoising stopped")
        out[i] = denoise_plane(model, plane, scaled, tile, overlap)
        if progress is not None:
            progress(i + 1, len(planes))
    return from_planes(out, data.shape, axes)
