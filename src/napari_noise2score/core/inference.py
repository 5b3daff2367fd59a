"""Denoising: the network's score, then Tweedie's formula, tile by tile (``TiledDenoiser``,
the one tiling path) on any array-like that slices like NumPy (in memory, dask, zarr, a
memory-mapped ``.npy``): one tile plus its halo is read and held at a time. Tiles start on
the network's pooling grid and their halo covers the receptive field and the local mean's
reach, so the result equals whole-plane inference to float tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace

import dask.array as da
import numpy as np
import psutil
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from .errors import Cancelled, Noise2ScoreError
from .layout import PlaneLayout
from .model import Noise2ScoreModel
from .network import ScoreUNet
from .noise import GAUSSIAN, NoiseParams, noise_model, tweedie
from .planewise import central_slices, config_for_plane
from .stack import check_axes, check_image, from_planes
from .wiener import REACH as WIENER_REACH
from .wiener import SHRINK_ANSCOMBE, SHRINK_GAUSSIAN, refine

DEFAULT_TILE = 1024
#: Std, in pixels, of the Gaussian over which the denoised image keeps the data's mean.
MEAN_RADIUS = 8.0
#: Pixels the local-mean filter reaches (scipy's Gaussian kernel, truncated at 4 std).
MEAN_REACH = int(4.0 * MEAN_RADIUS + 0.5)


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
    """An upper bound, in pixels, on how far one input pixel can change the network's output,
    counted layer by layer (3x3 convolutions, 2x2 pools and transposed convolutions at their
    own resolutions, the pixel unshuffle, a decorrelating ``stride`` stretching it all). For
    the default CPU network (width 24, depth 3, unshuffle 2) it is 117 px; perturbing one
    pixel of a random network in float64 changes outputs up to 103 px away
    (docs/algorithm.md)."""
    levels = [2**i for i in range(net.depth)]
    folded = 2 + sum(p + 2 * 2 * p for p in levels) + sum(p + 2 * p for p in levels)
    inner = net.unshuffle * folded + net.unshuffle - 1
    return net.stride * inner + net.stride - 1


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def default_overlap(net: ScoreUNet) -> int:
    """The default tile halo: the receptive radius rounded up to the network's multiple."""
    return _round_up(receptive_radius(net), net.multiple)


def resolve_tta(tta: bool | None, n_pixels: int) -> bool:
    """Whether to average over the 8 flips and turns: ``tta`` when given, else (auto) only
    for inputs of at most ``TTA_AUTO_PIXELS``."""
    return bool(tta) if tta is not None else n_pixels <= TTA_AUTO_PIXELS


def wiener_applies(model: Noise2ScoreModel, scaled: NoiseParams) -> bool:
    """Whether the Wiener step can follow Tweedie's for ``model``: the noise there is white
    Gaussian of a known std (Gaussian noise, or the Anscombe route; not decorrelated)."""
    return noise_model(scaled.model) is GAUSSIAN and (model.config.decorrelate or 1) == 1


def resolve_wiener(wiener: bool | None, n_pixels: int) -> bool:
    """Whether to take the Wiener step: ``wiener`` when given, else (auto) by the size rule
    of the 8-fold average (up to ``TTA_AUTO_PIXELS``: it costs about as much again)."""
    return bool(wiener) if wiener is not None else n_pixels <= TTA_AUTO_PIXELS


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
    """The network's output on a (1, 1, H, W) block; with ``tta`` averaged over the 8 flips
    and turns of the block padded to the pooling grid (so tiles still equal the whole)."""
    h, w = block.shape[-2:]
    if not tta:
        return network_output(net, block)
    padded = _pad_to_multiple(block, net.multiple)
    total = torch.zeros_like(padded)
    for k in range(8):
        total += _undo_dihedral(network_output(net, _dihedral(padded, k)), k)
    return (total / 8)[..., :h, :w]


@torch.inference_mode()
def predict_plane(net: ScoreUNet, plane: np.ndarray, tile: int = DEFAULT_TILE,
                  overlap: int | None = None, tta: bool = False) -> np.ndarray:
    """The network's output on one 2D plane, in tiles of ``tile`` pixels with a halo (both
    rounded up to the network's multiple, so every tile starts on the plane's pooling grid:
    with a halo covering the receptive field, the default, it equals whole-plane inference
    to float tolerance); ``tta`` averages each tile's over its 8 flips and quarter turns."""
    if overlap is None:
        overlap = default_overlap(net)
    if tile < 1 or overlap < 0:
        raise Noise2ScoreError("tile must be >= 1 and overlap >= 0")
    tile, overlap = _round_up(tile, net.multiple), _round_up(overlap, net.multiple)
    out = np.empty(plane.shape, dtype=np.float32)
    for window in tile_grid(*plane.shape, tile):
        (y0, y1, x0, x1), (ya, yb, xa, xb) = window, haloed(window, overlap, plane.shape)
        res = network_on(net, plane[ya:yb, xa:xb], tta)
        out[y0:y1, x0:x1] = res[y0 - ya : y1 - ya, x0 - xa : x1 - xa]
    return out


@torch.inference_mode()
def network_on(net: ScoreUNet, plane: np.ndarray, tta: bool = False) -> np.ndarray:
    """The network's output on one 2D array in one forward pass (8 with ``tta``), float32."""
    block = torch.from_numpy(np.ascontiguousarray(plane, np.float32))
    block = block[None, None].to(next(net.parameters()).device)
    return _block_output(net, block, tta)[0, 0].float().cpu().numpy()


def haloed(window: tuple[int, int, int, int], overlap: int,
           shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The core window (y0, y1, x0, x1) grown by ``overlap`` on every side, inside the plane
    of ``shape``: (ya, yb, xa, xb)."""
    y0, y1, x0, x1 = window
    h, w = shape
    return max(y0 - overlap, 0), min(y1 + overlap, h), max(x0 - overlap, 0), min(x1 + overlap, w)


def denoise_plane(model: Noise2ScoreModel, plane: np.ndarray, scaled: NoiseParams,
                  origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Denoise one 2D plane, or a region of one starting at ``origin`` (input units in,
    float32 input units out), with the model's mixed-noise mode, TTA and Wiener settings.
    The steps after the network are pointwise, but for the Wiener step (``wiener.py``),
    whose reach is ``wiener.REACH`` and whose blocks sit on the plane's grid: a region
    denoised and cropped gives the whole plane's pixels as long as the network's output
    agrees."""
    plane = np.asarray(plane)
    y = model.to_scaled(plane)
    score = model.score(y, network_on(model.net, y, model.config.tta))
    x = tweedie(y, score, scaled, model.smoothing, model.config.mixed_mode)
    if model.config.wiener and wiener_applies(model, scaled):
        shrink = SHRINK_ANSCOMBE if model.config.anscombe else SHRINK_GAUSSIAN
        x = _wiener_step(y, x, float(scaled.sigma), origin, shrink)
    x = model.from_scaled(x)
    # in input units: after the Anscombe route's non-linear inverse too (docs/algorithm.md)
    out = preserve_local_mean(plane.astype(np.float32), x)
    return clip_to_range(plane, out)


def _wiener_step(y: np.ndarray, x: np.ndarray, sigma: float, origin: tuple[int, int],
                 shrink: float) -> np.ndarray:
    """The Wiener step on the scaled ``y`` with the pilot ``x`` (numpy in and out)."""
    with torch.inference_mode():
        return refine(torch.from_numpy(np.ascontiguousarray(y, np.float32)),
                      torch.from_numpy(np.ascontiguousarray(x, np.float32)), sigma,
                      origin, shrink=shrink).numpy()


def clip_to_range(plane: np.ndarray, out: np.ndarray) -> np.ndarray:
    """For integer data, the denoised value within the type's range (0..255 for uint8): the
    capture was clipped there, so its expected value lies inside too, and at a saturated
    pixel that is the denoised value (usually below 255), not the clipped reading. Keeping
    saturated readings cost 1.4 dB on synthetic two-photon captures with 0.8 % of pixels at
    255 (docs/algorithm.md)."""
    if np.issubdtype(plane.dtype, np.integer):
        info = np.iinfo(plane.dtype)
        np.clip(out, info.min, info.max, out=out)
    return out


def preserve_local_mean(y: np.ndarray, x: np.ndarray, radius: float = MEAN_RADIUS) -> np.ndarray:
    """Give ``x`` the local mean of ``y``: x + G * (y - x), G a Gaussian of std ``radius``.

    A posterior mean is unbiased on average (E[E[x | y]] = E[y] for zero-mean noise), but a
    short-trained score and the Poisson steps' approximations are not: on real data the
    estimate drifts by a few grey levels in dark backgrounds. Restoring the data's local
    mean removes that drift and adds only noise averaged over ~(2 radius)^2 pixels; the
    filter reaches 4 * radius pixels, well inside the default tile halo."""
    return (x + gaussian_filter((y - x).astype(np.float32), radius, mode="reflect")).astype(
        np.float32)


def denoise_array(model: Noise2ScoreModel, data: np.ndarray, axes: str | None = None,
                  noise: NoiseParams | None = None, tile: int | None = None,
                  overlap: int | None = None, progress: ProgressFn | None = None,
                  stop: StopFn | None = None) -> np.ndarray:
    """Denoise ``data`` (2D, or a stack of 2D planes along ``axes``) into float32, same units,
    with ``TiledDenoiser``; ``noise`` overrides the model's parameters (input units).
    ``progress(tiles_done, tiles_total)`` is called after each tile; ``stop`` is polled
    before each (``Cancelled`` when it returns True)."""
    data = np.asarray(data)
    check_image(data)
    axes = check_axes(axes, data.ndim)
    tiler = TiledDenoiser(model, data.shape, axes, noise, tile, overlap)
    out = np.empty((math.prod(tiler.layout.stack_shape), *tiler.layout.plane_shape), np.float32)
    for i, plane in enumerate(tiler.iter_planes(data, progress, stop)):
        out[i] = plane
    return from_planes(out, data.shape, axes)


#: Bytes of activations per input pixel of the default CPU network (width 24, depth 3,
#: unshuffle 2): peak resident memory growth of one forward pass, measured 175 at 1024 x 1024
#: and 159 at 2048 x 2048 (docs/algorithm.md).
MEASURED_BYTES_PER_PIXEL = 175
#: At most this much memory goes to one tile's forward pass when the tile size is automatic.
TILE_MEMORY_CAP = 384 * 2**20
MAX_TILE = 4096


def _bytes_per_pixel(net: ScoreUNet) -> float:
    """Memory per input pixel: activations scaled from the measured default-network figure
    by channels x resolution, plus the float32 planes of the Tweedie step."""
    widths = [net.head[0].out_channels * min(2**i, 4) for i in range(net.depth + 1)]
    load = sum(w / 4**i for i, w in enumerate(widths)) / net.unshuffle**2
    reference = (24 + 48 / 4 + 96 / 16 + 96 / 64) / 4  # the default CPU network
    return MEASURED_BYTES_PER_PIXEL * load / reference + 32


def choose_tile(net: ScoreUNet, overlap: int, memory: int | None = None) -> int:
    """The largest tile (a multiple of the network's) whose forward pass, halo included, fits
    in ``memory`` bytes (default: a quarter of the free memory, on the CPU at most 384 MiB)."""
    if memory is None:
        device = next(net.parameters()).device
        if device.type == "cuda":
            memory = torch.cuda.mem_get_info(device)[0] // 4
        else:
            memory = min(psutil.virtual_memory().available // 4, TILE_MEMORY_CAP)
    m = net.multiple
    side = int(math.sqrt(max(memory, 0) / _bytes_per_pixel(net))) - 2 * overlap
    return int(min(max(side // m * m, 4 * m), MAX_TILE))


#: More tiles than this in one plane are refused before the grid is made (it would fill the
#: memory): 4 Mi tiles of the default 1024 pixels are a plane of 4 Tpx.
MAX_TILES_PER_PLANE = 2**22


def tile_grid(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Core windows (y0, y1, x0, x1) covering a plane; starts are multiples of ``tile``."""
    return [(y0, min(y0 + tile, height), x0, min(x0 + tile, width))
            for y0 in range(0, height, tile) for x0 in range(0, width, tile)]


class TiledDenoiser:
    """Denoise an array-like of any layout plane by plane, one haloed tile at a time; the
    halo (``overlap``) defaults to the network's receptive field plus the local-mean
    filter's reach, so tiles give the whole-plane result to float tolerance."""

    def __init__(self, model: Noise2ScoreModel, shape: tuple[int, ...], axes: str | None = None,
                 noise: NoiseParams | None = None, tile: int | None = None,
                 overlap: int | None = None, memory: int | None = None) -> None:
        net = model.net
        m = net.multiple
        #: whether tiles are averaged over the 8 flips and turns (auto: by the input's size)
        self.tta = resolve_tta(model.config.tta, math.prod(shape))
        self.layout = PlaneLayout(tuple(shape), check_axes(axes, len(shape)))
        params = (noise or model.noise_params()).validate()  # the model's, or ``noise``
        if params.model != model.config.noise:
            model.noise_params(noise=params.model)  # raises the mismatch error
        self.scaled = model.tweedie_noise(params)  # in scaled intensities
        #: whether the Wiener step follows Tweedie's (auto: by size, where it applies)
        self.wiener = (resolve_wiener(model.config.wiener, math.prod(shape))
                       and wiener_applies(model, self.scaled))
        self.model = model.with_options(tta=self.tta, wiener=self.wiener)
        if overlap is None:  # the network's field, the Wiener step's and local mean's reach
            overlap = default_overlap(net) + _round_up(MEAN_REACH, m)
            if self.wiener:
                overlap += _round_up(WIENER_REACH, m)
        if overlap < 0 or (tile is not None and tile < 1):
            raise Noise2ScoreError("tile must be >= 1 and overlap >= 0")
        if memory is not None and not memory > 0:
            raise Noise2ScoreError(f"the memory for a tile must be > 0, got {memory} bytes")
        self.overlap = _round_up(overlap, m)
        h, w = self.layout.plane_shape
        if tile is None:  # from memory, then evened out so no tile is a thin remainder
            longest = max(h, w)
            tile = -(-longest // -(-longest // choose_tile(net, self.overlap, memory)))
        self.tile = _round_up(tile, m)
        n_tiles = -(-h // self.tile) * -(-w // self.tile)
        if n_tiles > MAX_TILES_PER_PLANE:  # a damaged header, most likely: fail, fast
            raise Noise2ScoreError(
                f"a plane of {h} x {w} pixels would be {n_tiles} tiles of {self.tile}; give "
                "a larger tile (or check the file: its header may be damaged)")
        self.grid = tile_grid(h, w, self.tile)
        self._plane_models: dict[tuple[int, ...], Noise2ScoreModel] = {}
        model.net.eval()

    @property
    def n_tiles(self) -> int:
        """Tiles in the whole array (the unit of progress and of stopping)."""
        return len(self.grid) * math.prod(self.layout.stack_shape)

    def model_for(self, source, stack_index: tuple[int, ...]) -> Noise2ScoreModel:
        """The model for one plane: with the plane's own noise parameters where the
        model's overstate them (``planewise.py``; decided once per plane)."""
        model = self.model
        if not (model.config.anscombe and model.config.per_plane_noise):
            return model
        if stack_index not in self._plane_models:
            rows, cols = central_slices(*self.layout.plane_shape)
            window = self.layout.read(source, stack_index, rows, cols)
            config = config_for_plane(model.config, np.asarray(window))
            self._plane_models[stack_index] = (
                model if config is model.config else replace(model, config=config))
        return self._plane_models[stack_index]

    def denoise_tile(self, source, stack_index: tuple[int, ...], window) -> np.ndarray:
        """The denoised core window (y0, y1, x0, x1) of one plane, float32, input units."""
        y0, y1, x0, x1 = window
        ya, yb, xa, xb = haloed(window, self.overlap, self.layout.plane_shape)
        region = self.layout.read(source, stack_index, slice(ya, yb), slice(xa, xb))
        check_image(region, name="input")
        out = denoise_plane(self.model_for(source, stack_index), region, self.scaled,
                            (ya, xa))
        return out[y0 - ya : y1 - ya, x0 - xa : x1 - xa]

    def iter_planes(self, source, progress: ProgressFn | None = None,
                    stop: StopFn | None = None) -> Iterator[np.ndarray]:
        """Yield each denoised plane (Y, X) in stack C order; ``stop`` is polled before each
        tile (raising ``Cancelled``) and ``progress(tiles_done, tiles_total)`` after each."""
        h, w = self.layout.plane_shape
        done, total = 0, self.n_tiles
        for stack_index in self.layout.plane_indices():
            plane = np.empty((h, w), dtype=np.float32)
            for window in self.grid:
                if stop is not None and stop():
                    raise Cancelled("denoising stopped")
                y0, y1, x0, x1 = window
                plane[y0:y1, x0:x1] = self.denoise_tile(source, stack_index, window)
                done += 1
                if progress is not None:
                    progress(done, total)
            yield plane

    def as_dask(self, source):
        """A lazy dask array in the source's layout: each chunk (one tile of one plane) is
        denoised only when computed, e.g. when napari shows it."""
        layout = self.layout
        chunks = [tuple(min(self.tile, n - s) for s in range(0, n, self.tile)) if a in "YX"
                  else (1,) * n for a, n in zip(layout.axes, layout.shape, strict=True)]
        y_axis, x_axis = layout.axes.index("Y"), layout.axes.index("X")
        stack_axes = layout.order[:-2]

        def block(block_info=None) -> np.ndarray:
            (loc,) = [v["array-location"] for k, v in block_info.items() if k is None]
            stack_index = tuple(loc[a][0] for a in stack_axes)
            window = (*loc[y_axis], *loc[x_axis])
            out = self.denoise_tile(source, stack_index, window)
            shape = [1] * len(layout.shape)
            shape[y_axis], shape[x_axis] = out.shape
            return (out.T if layout.transposed else out).reshape(shape)

        return da.map_blocks(block, chunks=tuple(chunks), dtype=np.float32,
                             meta=np.empty((0,) * len(layout.shape), np.float32))

