"""AR-DAE score learning as a generator of typed progress updates (``updates``), stoppable
between steps."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch

from . import dither, planewise, updates
from .config import AUTO, TrainConfig
from .device import select_device
from .errors import Noise2ScoreError
from .estimation import estimate_noise
from .finetune import choose_start, iter_finetune
from .model import Noise2ScoreModel, build_network, network_bytes, package_version
from .noise import NoiseParams
from .patches import PatchSampler, choose_patch
from .route import choose_transform, describe_route
from .score import score_from_residual, to_network_units, training_domain
from .stack import image_planes, intensity_scale

# the patch sampler and the update types live below this module and finetune's; they stay
# importable from here
from .updates import NoiseEstimated, TrainDone, TrainNote, TrainProgress, TrainUpdate


def ardae_loss(net_out: torch.Tensor, u: torch.Tensor, sigma_a: float) -> torch.Tensor:
    """AR-DAE loss: mean of (u + sigma_a * R(y + sigma_a * u))^2; minimised by the score."""
    return (u + sigma_a * net_out).square().mean()


def annealed_sigma(fraction: float, s_max: float, s_min: float) -> float:
    """sigma_a at a fraction of training: geometric from s_max to s_min."""
    f = min(max(fraction, 0.0), 1.0)
    return s_max * (s_min / s_max) ** f


def prepare_planes(images: np.ndarray | Sequence[np.ndarray], axes: str | None) -> list[np.ndarray]:
    """Check the training images and view each as a (N, Y, X) stack of planes."""
    if isinstance(images, np.ndarray):
        images = [images]
    if len(images) == 0:
        raise Noise2ScoreError("no training images given")
    stacks = [image_planes(image, axes, f"training image {i + 1}" if len(images) > 1
                           else "training image") for i, image in enumerate(images)]
    if all(float(s.min()) == float(s.max()) for s in stacks):
        raise Noise2ScoreError("the training images are constant: there is nothing to learn")
    return stacks


def typical_noise_std(planes: Sequence[np.ndarray], noise_w: NoiseParams, domain: float) -> float:
    """The noise std at the mean intensity, in the training domain."""
    rng = np.random.default_rng(0)
    sample = np.concatenate([rng.choice(p.reshape(-1), min(p.size, 20_000)) for p in planes])
    level = max(float(np.mean(sample)) / domain, 1e-3)
    return noise_w.kind.typical_std(level, noise_w)


def measured_stride(stacks: Sequence[np.ndarray]) -> int:
    """The decorrelating stride the noise of the planes calls for (1 when unmeasurable)."""
    try:
        return estimate_noise(stacks).stride
    except Noise2ScoreError:
        return 1


def check_network_fits(config: TrainConfig, device_type: str) -> int:
    """The bytes of the network's weights; Noise2ScoreError when training it (weights,
    gradients and two Adam moments) cannot fit in the memory available on the CPU."""
    nbytes = network_bytes(config, device_type)
    if device_type == "cpu":
        import psutil

        from ..io.outputs import format_bytes

        available = psutil.virtual_memory().available
        if 4 * nbytes > available:
            cfg = config.resolved(device_type, 1.0)
            raise Noise2ScoreError(
                f"a network of width {cfg.width} and depth {cfg.depth} needs "
                f"{format_bytes(4 * nbytes)} of memory to train, more than the "
                f"{format_bytes(available)} available: choose a smaller width or depth")
    return nbytes


@contextmanager
def _memory_errors() -> Iterator[None]:
    """An allocation failure (MemoryError, torch's CPU or GPU out of memory) as one line."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        text = str(exc).lower()
        if not isinstance(exc, MemoryError) and "allocate" not in text \
                and "out of memory" not in text:
            raise
        raise Noise2ScoreError(
            f"out of memory while training ({type(exc).__name__}): choose a smaller width, "
            "depth, batch size or patch size") from None


def iter_training(images: np.ndarray | Sequence[np.ndarray], config: TrainConfig,
                  stop: Callable[[], bool] | None = None) -> Iterator[TrainUpdate]:
    """Train a score network on noisy ``images``; yield a TrainProgress per step, then TrainDone.

    With ``config.noise == "auto"`` the noise is first estimated from the images (a
    NoiseEstimated update); a TrainNote then says where training starts (``config.init``):
    fine-tuning (``finetune.py``: the pretrained prior by default when the noise is in its
    range) or from scratch. ``stop`` is polled before every step: training ends within one
    step of it returning True, and the model so far is still delivered. Running out of
    memory raises one clear Noise2ScoreError.
    """
    with _memory_errors():
        yield from _iter_training(images, config, stop)


def _iter_training(images, config: TrainConfig, stop) -> Iterator[TrainUpdate]:
    stacks = prepare_planes(images, config.axes)
    if config.noise == AUTO:
        estimate = estimate_noise(stacks, fallback=True)
        config = choose_transform(config.with_estimate(estimate), stacks)
        yield NoiseEstimated(estimate, describe_route(config))
    else:
        config = choose_transform(config, stacks)
        if config.decorrelate is None:
            config = replace(config, decorrelate=measured_stride(stacks))
    start = time.perf_counter()  # the budget covers building the network, too
    device = select_device(config.device)
    if config.anscombe:
        planes, plane_params, own = planewise.transformed_planes(
            config, [p for s in stacks for p in s])
        if own:
            yield TrainNote(planewise.describe(own, len(planes)))
        scale = planewise.transformed_scale(planes)
    else:
        scale = intensity_scale(stacks, config.offset)
    begin = choose_start(config, scale)
    yield TrainNote(begin.reason)
    if begin.model is not None:
        # the prior is bound to this config's parameters: its planes are the ones above
        same = config.anscombe and begin.init == "pretrained"
        transformed = (planes, plane_params) if same else None
        yield from iter_finetune(stacks, replace(config, init=begin.init), begin.model, stop,
                                 start, transformed)
        return
    config = replace(config, init="scratch")
    if not config.anscombe:
        planes = [to_network_units(config, p) for s in stacks for p in s]
    gat_planes = planes
    planes = [p / np.float32(scale) for p in planes]
    domain, noise_w = training_domain(config, scale)
    cfg = config.resolved(device.type, typical_noise_std(planes, noise_w, domain))
    if config.anscombe and dither.ENABLED:
        planes = dither.with_dither(gat_planes, plane_params, scale)
    check_network_fits(cfg, device.type)
    torch.manual_seed(cfg.seed)
    net = build_network(cfg).to(device)
    patch = choose_patch(stacks, cfg.patch_size, net)
    sampler = PatchSampler(planes, patch, cfg.seed)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, betas=(0.9, 0.99))
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)

    step, fraction, ema, sigma_a = 0, 0.0, None, cfg.sigma_a_max
    stopped = False
    net.train()
    while fraction < 1.0:
        if stop is not None and stop():
            stopped = True
            break
        sigma_a = annealed_sigma(fraction, cfg.sigma_a_max, cfg.sigma_a_min)
        for group in optimiser.param_groups:
            group["lr"] = cfg.learning_rate * updates.cosine_decay(fraction)
        y = dither.apply(torch.from_numpy(sampler.sample(cfg.batch_size)), gen)
        u = torch.randn(y.shape, generator=gen)
        if cfg.antithetic:  # pairs y + s*u, y - s*u: the O(1/s) gradient noise cancels
            half = (cfg.batch_size + 1) // 2
            y = torch.cat([y[:half], y[:half]])[: cfg.batch_size]
            u = torch.cat([u[:half], -u[:half]])[: cfg.batch_size]
        z = (y + (sigma_a * domain) * u).to(device)
        if device.type == "cpu":
            z = z.contiguous(memory_format=torch.channels_last)
        score = score_from_residual(net(z), z, noise_w, domain, sigma_a)
        loss = ardae_loss(score, u.to(device), sigma_a)
        value = updates.optimiser_step(optimiser, loss)
        step += 1
        if not math.isfinite(value):
            raise Noise2ScoreError("training diverged (the loss is not finite); try a lower "
                                   "learning rate")
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        elapsed = time.perf_counter() - start
        fraction = updates.budget_spent(cfg, step, elapsed)
        yield TrainProgress.at(step, ema, sigma_a, elapsed, fraction)

    net.eval()
    model = Noise2ScoreModel(cfg, net, scale, sigma_a, step, time.perf_counter() - start,
                             package_version())
    yield TrainDone(model.to(device), stopped)


def train_model(images: np.ndarray | Sequence[np.ndarray], config: TrainConfig,
                on_progress: Callable[[TrainProgress], None] | None = None,
                stop: Callable[[], bool] | None = None) -> Noise2ScoreModel:
    """Run ``iter_training`` to the end and return the model."""
    for update in iter_training(images, config, stop):
        if isinstance(update, TrainDone):
            return update.model
        if on_progress is not None and isinstance(update, TrainProgress):
            on_progress(update)
    raise AssertionError("training ended without a model")  # pragma: no cover
