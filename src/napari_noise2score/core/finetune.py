"""Where training starts (``TrainConfig.init``), and fine-tuning a model on the user's data.

Fine-tuning has a schedule of its own: a lower learning rate (``LR_FACTOR`` of the
configured one, ramped up over the first ``WARMUP`` of the budget, then cosine-decayed) and
no sigma_a annealing restarted from the top: a noise-conditioned network keeps learning
over the prior's band of perturbations (``prior.RATIO_RANGE``), a plain model at its own
final sigma_a. The starting model is never lost: a self-supervised criterion (the AR-DAE
loss on held-out patches of the user's data, with fixed perturbations: ``Criterion``) is
measured before the first step, every tenth of the budget and at the end, and the best
network so far is what training returns, also when it is stopped midway. On the Anscombe
route a fine-tuned prior returns that network blended with the prior in weight space
(``BLEND``): fine-tuned alone, it partly learns the user's own noise and loses to the
prior on the very pixels it trained on (docs/algorithm.md, "Blending the fine-tuned prior").
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import dither, planewise
from . import prior as P
from .config import AUTO, INITS, TrainConfig
from .device import select_device
from .errors import Noise2ScoreError
from .model import Noise2ScoreModel
from .patches import PatchSampler, choose_patch
from .score import score_from_residual, training_domain
from .updates import TrainDone, TrainNote, TrainProgress, budget_spent, cosine_decay, optimiser_step

#: Fine-tuning learning rate over the configured (from-scratch) one.
LR_FACTOR = 0.2
#: How many times over the budget the criterion is measured (besides start and end).
CHECKS = 10
#: Held-out patches of the criterion (at most).
VAL_PATCHES = 64
#: Perturbation ratios (sigma_a / noise std) of the criterion for noise-conditioned models.
VAL_RATIOS = (0.3, 0.6)
#: Share of the fine-tuned change kept in a prior fine-tuned on the Anscombe route: its weights are
#: ``start + BLEND * (tuned - start)``, a weight-space blend of the prior and the network
#: fine-tuned on the user's data (docs/algorithm.md, "Blending the fine-tuned prior").
BLEND = 0.5
#: Fraction of the budget over which the learning rate ramps up from zero: a fresh Adam
#: moves every weight by about the learning rate at its first steps, which knocks a trained
#: network off its optimum.
WARMUP = 0.1


@dataclass(frozen=True)
class Start:
    """Where training starts: ``init`` ('pretrained', 'scratch' or a file), why, and the
    model to fine-tune (None: from scratch)."""

    init: str
    reason: str
    model: Noise2ScoreModel | None


def choose_start(config: TrainConfig, scale: float) -> Start:
    """Resolve ``config.init`` for data of intensity ``scale`` (noise already known)."""
    init = config.init
    if init == "scratch":
        return Start("scratch", "training from scratch (as asked)", None)
    if init in (AUTO, "pretrained"):
        sized = {k: getattr(config, k) for k in P.PRIOR_ARCH if getattr(config, k) is not None}
        if any(v != P.PRIOR_ARCH[k] for k, v in sized.items()):
            if init == "pretrained":
                raise Noise2ScoreError("the prior's network size is fixed ("
                                       + ", ".join(f"{k} {v}" for k, v in P.PRIOR_ARCH.items())
                                       + "): give no network size, or use init 'scratch'")
            return Start("scratch", "training from scratch (a network size was given)", None)
        try:
            P.check_noise_model(config.noise, config.anscombe)
            P.check_independent(config.decorrelate or 1)
            if config.anscombe:
                model = P.anscombe_model(config, scale)
            else:
                model = P.pretrained_model(config.sigma, scale, tta=config.tta,
                                           axes=config.axes, offset=config.offset)
        except P.PriorRangeError as exc:
            if init == "pretrained":
                raise
            return Start("scratch", f"training from scratch: {exc}".replace(P.HINT, ""), None)
        return Start("pretrained", "fine-tuning the pretrained prior "
                     f"({model.steps} pre-training steps)", model)
    return Start(init, f"fine-tuning {init}", _model_file_start(init, config))


def _model_file_start(path: str, config: TrainConfig) -> Noise2ScoreModel:
    """A saved model to fine-tune, with the noise parameters of ``config``."""
    if not Path(path).is_file():
        raise Noise2ScoreError(f"init {path!r} is none of {', '.join(map(repr, INITS))} and "
                               "no model file of that name exists")
    model = Noise2ScoreModel.load(path)
    if config.noise != model.config.noise:
        raise Noise2ScoreError(f"{path} was trained for {model.config.noise} noise, not "
                               f"{config.noise}: fine-tune it on data with that noise")
    if model.conditioned:
        P.check_noise_model(config.noise)
        P.check_noise_std(config.sigma / model.scale)
        return model.for_noise(config.sigma)
    noise = {k: getattr(config, k) for k in ("sigma", "gain", "shape")}
    if model.config.count_domain and noise["gain"] != model.config.gain:
        noise["gain"] = model.config.gain  # the count domain is fixed by the model's gain
    return replace(model, config=replace(model.config, **noise))


def split_holdout(planes: Sequence[np.ndarray], patch: int) -> tuple[list, list]:
    """Training planes and held-out patches: the last ``patch`` rows of every plane at least
    4 patches tall are held out. With none that tall, patches of the training planes serve
    (then the criterion is not held out, only its perturbations are fresh)."""
    train, held = [], []
    for p in planes:
        if p.shape[-2] >= 4 * patch and p.shape[-1] >= patch:
            train.append(p[..., :-patch, :])
            strip = p[..., -patch:, :]
            held += [strip[..., x:x + patch] for x in range(0, p.shape[-1] - patch + 1, patch)]
        else:
            train.append(p)
    if not held:
        rng = np.random.default_rng(1)
        for _ in range(VAL_PATCHES):
            p = train[rng.integers(len(train))]
            y, x = rng.integers(p.shape[-2] - patch + 1), rng.integers(p.shape[-1] - patch + 1)
            held.append(p[..., y:y + patch, x:x + patch])
    step = max(1, len(held) // VAL_PATCHES)
    return train, held[::step][:VAL_PATCHES]


class Criterion:
    """AR-DAE loss of a model's network on fixed held-out patches with fixed antithetic
    perturbations: lower is a better score on the user's data."""

    def __init__(self, model: Noise2ScoreModel, patches: Sequence[np.ndarray],
                 device: torch.device) -> None:
        self.model = model
        y = np.stack(patches).astype(np.float32)
        gen = torch.Generator().manual_seed(12345)
        y = dither.apply(torch.from_numpy(y[:, None] if y.ndim == 3 else y), gen)
        u = torch.randn(y.shape, generator=gen)
        self.y, self.u = torch.cat([y, y]).to(device), torch.cat([u, -u]).to(device)

    @torch.no_grad()
    def __call__(self, net: torch.nn.Module) -> float:
        if not self.model.conditioned:
            return float(step_loss(self.model, net, self.y, self.u, 0.0))
        return float(np.mean([float(step_loss(self.model, net, self.y, self.u, r))
                              for r in VAL_RATIOS]))


def step_loss(model: Noise2ScoreModel, net: torch.nn.Module, y: torch.Tensor, u: torch.Tensor,
              ratio: float | torch.Tensor) -> torch.Tensor:
    """The fine-tuning loss: noise-conditioned AR-DAE at ``ratio`` (per item) of the noise
    std, or plain AR-DAE at the model's final sigma_a."""
    domain, noise_w = training_domain(model.config, model.scale)
    if model.conditioned:
        s = torch.full((y.shape[0],), noise_w.sigma * domain, device=y.device)
        ratio = torch.as_tensor(ratio, dtype=torch.float32, device=y.device).expand(y.shape[0])
        return P.conditioned_loss(net, y, s, ratio, u)
    sa = model.final_sigma_a
    z = y + (sa * domain) * u
    if z.device.type == "cpu":
        z = z.contiguous(memory_format=torch.channels_last)
    score = score_from_residual(net(z), z, noise_w, domain, sa)
    return (u + sa * score).square().mean()


def iter_finetune(stacks: Sequence[np.ndarray], config: TrainConfig, start: Noise2ScoreModel,
                  stop: Callable[[], bool] | None, started: float,
                  transformed: tuple[list, list] | None = None) -> Iterator:
    """Fine-tune ``start`` on the planes of ``stacks`` for ``config``'s budget (counted from
    ``started``); yield TrainProgress per step, a TrainNote with the criterion's verdict,
    then TrainDone with the best network measured (its steps and seconds: this run's).
    ``transformed``: the planes after the Anscombe transform with the start's parameters and
    their (gain, read noise), when the caller has them (``planewise.transformed_planes``)."""
    device = select_device(config.device)
    model = start.to(device)
    net = copy.deepcopy(model.net).to(device)
    if model.config.anscombe:  # each plane with its parameters (planewise.py)
        gat_planes, params = transformed or planewise.transformed_planes(
            model.config, [p for s in stacks for p in s])[:2]
        planes = (dither.with_dither(gat_planes, params, model.scale) if dither.ENABLED
                  else [p / np.float32(model.scale) for p in gat_planes])
    else:
        planes = [model.to_scaled(p) for s in stacks for p in s]
    patch = choose_patch(stacks, config.patch_size, net)
    train_planes, held = split_holdout(planes, patch)
    sampler = PatchSampler(train_planes, patch, config.seed)
    criterion = Criterion(model, held, device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    lr0 = config.learning_rate * LR_FACTOR
    optimiser = torch.optim.Adam(net.parameters(), lr=lr0, betas=(0.9, 0.99))
    first = best = criterion(net)
    best_state, best_step = copy.deepcopy(net.state_dict()), 0
    start_state = best_state
    step, fraction, ema, next_check, stopped = 0, 0.0, None, 1.0 / CHECKS, False
    half = (config.batch_size + 1) // 2
    lo, hi = P.RATIO_RANGE
    domain, noise_w = training_domain(model.config, model.scale)  # sigma_a shown: mid-band
    shown_sigma_a = (lo + hi) / 2 * noise_w.sigma if model.conditioned else model.final_sigma_a
    net.train()
    while fraction < 1.0:
        if stop is not None and stop():
            stopped = True
            break
        ramp = min(1.0, (fraction + 1e-3) / WARMUP)
        for group in optimiser.param_groups:
            group["lr"] = lr0 * ramp * cosine_decay(fraction)
        y = dither.apply(torch.from_numpy(sampler.sample(half)), gen)
        u = torch.randn(y.shape, generator=gen)
        ratio = torch.from_numpy(rng.uniform(lo, hi, half).astype(np.float32))
        loss = step_loss(model, net, torch.cat([y, y]).to(device), torch.cat([u, -u]).to(device),
                         torch.cat([ratio, ratio]).to(device))
        value = optimiser_step(optimiser, loss)
        step += 1
        if not math.isfinite(value):
            break  # diverged: the best network measured so far is kept
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        elapsed = time.perf_counter() - started
        fraction = budget_spent(config, step, elapsed)
        if fraction >= next_check and fraction < 1.0:
            next_check += 1.0 / CHECKS
            best, best_state, best_step = _keep_better(criterion, net, best, best_state,
                                                       best_step, step)
        yield TrainProgress.at(step, ema, shown_sigma_a, elapsed, fraction)
    best, best_state, best_step = _keep_better(criterion, net, best, best_state, best_step, step)
    blended = model.conditioned and model.config.anscombe and best_step > 0
    net.load_state_dict(blend(start_state, best_state, BLEND) if blended else best_state)
    net.eval()
    kept = "the starting model" if best_step == 0 else f"step {best_step}"
    mix = f", {BLEND:g} of its change from the start kept" if blended else ""
    yield TrainNote(f"held-out AR-DAE loss {first:.5f} at the start, {best:.5f} kept "
                    f"({kept} of {step}{mix})")
    kept_fields = ("width", "depth", "unshuffle", "decorrelate", "network", "noise", "sigma",
                   "gain", "shape", "offset", "sigma_a_max", "sigma_a_min")
    cfg = replace(config, **{k: getattr(model.config, k) for k in kept_fields})
    done = replace(model, config=cfg, net=net, steps=step,
                   seconds=time.perf_counter() - started)
    yield TrainDone(done.to(device), stopped)


def blend(start: dict, tuned: dict, share: float) -> dict:
    """Weights ``start + share * (tuned - start)`` (integer buffers from ``tuned``)."""
    return {k: start[k] + share * (v - start[k]) if v.is_floating_point() else v
            for k, v in tuned.items()}


def _keep_better(criterion: Criterion, net, best: float, state, best_step: int, step: int):
    value = criterion(net)
    net.train()
    if value < best:
        return value, copy.deepcopy(net.state_dict()), step
    return best, state, best_step
