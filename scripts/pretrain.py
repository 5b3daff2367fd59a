"""Pre-train the shipped score priors (src/napari_noise2score/weights/prior_*.pt).

Two targets (``--target``): ``ar-dae`` (the default), self-supervised, the network only
sees noisy images; ``clean``, denoising score matching against each patch's clean value
(every source must then have one). The sources:
- Train400 (clean natural images, [0, 1]) with synthetic Gaussian noise, its std drawn per
  patch uniformly from ``sigma_range`` grey levels;
- W2S noisy captures FOV 1-50 (real wide-field microscopy), each moved into a unit-noise
  domain with the generalized Anscombe transform of its own estimated gain, read noise and
  offset, then all divided by one constant so they span about [0, 1]: Gaussian-like noise
  of one known std (``w2s_fraction`` of each batch);
- optionally (``photon_fraction``, off by default) Train400 patches as synthetic low-photon
  8-bit captures (peak photons log-uniform in ``photon_range``, Poisson counts with a
  photomultiplier's Gamma-spread amplitude on half of them, read noise, offset, rounding,
  clipping at 0 and 255), moved through the GAT of their own effective gain, read noise and
  offset and scaled as the plugin's Anscombe route scales a plane: the transformed noise as
  it really is at a few photons per pixel, not exact Gaussian noise;
- optionally (``micro_fraction``) W2S *clean* averages FOV 4-50 as such captures:
  fluorescence content (FOV 1-3 make the synthetic two-photon development set, 51-60
  validate; neither is ever trained on).
With ``ar-dae`` each item is perturbed by ratio * its noise std, ratio uniform in
``prior.RATIO_RANGE``, and the noise-conditioned network learns the score at the total
std (``prior.conditioned_loss``); with ``clean`` it learns the score at the data's own
std from the clean value (``prior.conditioned_dsm_loss``; for a capture after the GAT the
target is the transformed value whose exact unbiased inverse is the clean count,
``expected_gat``).

Checkpoints (weights, optimiser, step, seconds, random states) go to OUT/checkpoint.pt every
``checkpoint_every`` seconds; a restart resumes from there. On the CPU the seconds recorded
are CPU seconds of the process, so a paused or crowded run counts only its own work; on a
GPU (``--device cuda`` or ``mps``; ``auto`` takes one when there is one) they are wall-clock
seconds. Patches and noise are drawn on the CPU in every case, so a run's data do not depend
on the device; a GPU runs larger batches (``--batch-size``, ``--lr``) and wider networks
(``--arch``) in the same script.
OUT/log.jsonl holds one line per validation: PSNR of zero-shot denoising of clean held-out
images (W2S clean FOV 51-60 crops) with synthetic Gaussian noise, by the plugin's own
denoising path. ``--export FILE`` writes
the checkpoint's weights with their provenance as a prior file and exits.

    python scripts/pretrain.py --out /work/prior-run --data ../shared/data

Both shipped files start from one such run exported at 39,609 steps (stop 11's
``prior_anscombe.pt``, in git at 5b32f90: ``git show 5b32f90:src/napari_noise2score/weights/
prior_anscombe.pt > prior_stop11.pt``). The Gaussian route's (``prior_gaussian.pt``)
continues it with a decaying learning rate:

    python scripts/pretrain.py --out /work/prior-decay --data ../shared/data --seed 1 \
        --init prior_stop11.pt --decay 39609 62000 --max-steps 62000

the Anscombe route's (``prior_anscombe.pt``, since stop 23) by denoising score matching on
fluorescence content and low-photon captures (docs/algorithm.md, "Stop 23"):

    python scripts/pretrain.py --out /work/prior-dsm --data ../shared/data --seed 3 \
        --init prior_stop11.pt --target clean --w2s-fraction 0 --micro-fraction 0.5 \
        --photon-fraction 0.2 --lr 3e-4 --decay 54609 69609 --max-steps 69609
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from napari_noise2score.core import prior as P
from napari_noise2score.core.anscombe import D_MIN, gat_inverse
from napari_noise2score.core.device import available_devices
from napari_noise2score.core.estimation import estimate_noise
from napari_noise2score.core.inference import denoise_array
from napari_noise2score.core.noise import NoiseParams, simulate
from napari_noise2score.core.training import PatchSampler


@dataclass
class PretrainConfig:
    """Everything that defines a pre-training run."""

    data: str = "../shared/data"
    train400: str = "train400"
    w2s_noisy: str = "w2s/noisy"
    w2s_fovs: tuple[int, int] = (1, 50)
    w2s_fraction: float = 0.2
    sigma_range: tuple[float, float] = (5.0, 75.0)  # grey levels of 8-bit data
    patch_size: int = 64
    batch_size: int = 16
    learning_rate: float = 5e-4
    seed: int = 0
    checkpoint_every: float = 180.0
    validate_every: float = 300.0
    val_fovs: tuple[int, ...] = (51, 55, 59)
    val_sigmas: tuple[float, ...] = (25.0, 50.0)
    arch: dict = field(default_factory=lambda: dict(P.PRIOR_ARCH))
    max_images: int | None = None  # per source, for smoke tests
    init: str | None = None  # a prior file to start from (its steps and seconds carried on)
    decay: tuple[int, int] | None = None  # cosine learning-rate decay between these steps
    final_lr: float = 2.5e-5  # the learning rate at and after the decay's end
    #: log-normal spread of the noise std the network is told on synthetic batches (the
    #: noise itself keeps its drawn std): 0 tells it exactly; > 0 trains for estimation error
    sigma_jitter: float = 0.0
    #: share of each batch drawn as synthetic low-photon captures after the GAT (0: none)
    photon_fraction: float = 0.0
    photon_range: tuple[float, float] = (6.0, 200.0)  # peak photons per pixel
    #: linear learning-rate ramp from 0 over the first this many steps (0: none); steps
    #: count on from an ``init`` file's, so a run started from one past them has no ramp
    warmup: int = 0
    #: largest global gradient norm of a step (None: no clipping); for wide networks at
    #: GPU batch sizes, where width 48 at lr 1e-3 diverged (docs/algorithm.md, stop 22)
    clip_grad: float | None = None
    #: what the network learns from: "ar-dae" (self-supervised, the noisy patch only) or
    #: "clean" (denoising score matching against each patch's clean value; every source
    #: must then have one, so ``w2s_fraction`` must be 0)
    target: str = "ar-dae"
    #: share of each batch drawn from W2S *clean* averages as synthetic low-photon captures
    #: (as ``photon_fraction`` does with Train400): fluorescence content with realistic noise
    micro_fraction: float = 0.0
    micro_clean: str = "w2s/clean"
    #: FOV 1-3 make the synthetic two-photon development set and 51-60 validate: never these
    micro_fovs: tuple[int, int] = (4, 50)

    def lr_at(self, step: int) -> float:
        """The learning rate of ``step``: ramped up over ``warmup``, constant, then
        cosine-decayed over ``decay``."""
        if step < self.warmup:
            return self.learning_rate * (step + 1) / self.warmup
        if self.decay is None or step <= self.decay[0]:
            return self.learning_rate
        start, end = self.decay
        t = min(1.0, (step - start) / max(1, end - start))
        span = self.learning_rate - self.final_lr
        return self.final_lr + 0.5 * span * (1 + math.cos(math.pi * t))


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"))


def gat(y: np.ndarray, gain: float, sigma: float, offset: float) -> np.ndarray:
    """Generalized Anscombe transform: Poisson-Gaussian noise to std about 1."""
    arg = gain * (y - offset) + 0.375 * gain * gain + sigma * sigma
    return (2.0 / gain) * np.sqrt(np.maximum(arg, 0.0))


#: The exact unbiased inverse's counts over a grid of transformed values (gain 1, no read
#: noise), to invert it: the transformed value whose inverse is a given clean count.
_D_GRID = np.linspace(D_MIN, 80.0, 20001)  # up to 1,600 counts: photon_range tops 200
_COUNTS_GRID = gat_inverse(_D_GRID, 1.0, 0.0)


def expected_gat(counts: np.ndarray, read: float) -> np.ndarray:
    """The transformed value that ``anscombe.gat_inverse`` maps back to ``counts`` (clean
    photon counts; ``read`` the read noise in counts): what the Anscombe route's denoiser
    should output for them."""
    return np.interp(np.asarray(counts, np.float64) + read * read, _COUNTS_GRID, _D_GRID)


def photon_patches(clean: np.ndarray, cfg: PretrainConfig, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean patches (n, 1, h, w) in [0, 1] as low-photon 8-bit captures after the GAT of
    their effective noise, each divided by the plugin's Anscombe-route scale of its capture
    (``prior.ANSCOMBE_SCALE`` x the transformed peak): the patches, their noise std, and
    their clean targets in the same domain (``expected_gat`` of the clean counts)."""
    n = clean.shape[0]
    lo, hi = np.log(cfg.photon_range)
    out = np.empty_like(clean)
    target = np.empty_like(clean)
    std = np.empty(n, np.float32)
    s_hi = P.TAU_RANGE[1]
    for i in range(n):
        photons = float(np.exp(rng.uniform(lo, hi)))
        gain = rng.uniform(0.4, 1.0) * 230.0 / photons  # grey levels per photon
        read, offset = rng.uniform(1.0, 15.0), rng.uniform(0.0, 25.0)
        mean = clean[i, 0].astype(np.float64) * photons
        counts = rng.poisson(mean)
        if rng.random() < 0.5:  # a photomultiplier: Gamma(k, gain / k) per photon
            k = rng.uniform(1.0, 4.0)
            amp = np.where(counts > 0, rng.gamma(np.maximum(counts * k, 1e-12), gain / k), 0.0)
            g_eff = gain * (1.0 + 1.0 / k)
        else:
            amp, g_eff = gain * counts, gain
        y = np.clip(np.rint(amp + offset + read * rng.standard_normal(counts.shape)), 0, 255)
        t = gat(y, g_eff, read, offset)
        top = float(gat(np.array(min(offset + gain * photons, 255.0)), g_eff, read, offset))
        scale = max(P.ANSCOMBE_SCALE * top, 1.0 / s_hi)
        out[i, 0] = t / scale
        target[i, 0] = expected_gat(mean * gain / g_eff, read / g_eff) / scale
        std[i] = 1.0 / scale
    return out, std, target


def load_micro(cfg: PretrainConfig) -> list[np.ndarray]:
    """W2S clean averages (FOV ``micro_fovs``, every channel) in [0, 1]."""
    root = Path(cfg.data) / cfg.micro_clean
    lo, hi = cfg.micro_fovs
    files = sorted(f for f in root.glob("fov*_ch*.png") if lo <= int(f.name[3:6]) <= hi)
    return [(_read(f) / 255.0).astype(np.float32) for f in files[: cfg.max_images]]


def load_w2s(cfg: PretrainConfig) -> tuple[list[np.ndarray], float]:
    """W2S noisy FOVs in a common unit-noise domain, and their noise std there."""
    root = Path(cfg.data) / cfg.w2s_noisy
    lo, hi = cfg.w2s_fovs
    files = sorted(f for f in root.glob("fov*_ch*.png") if lo <= int(f.name[3:6]) <= hi)
    planes, tops = [], []
    for f in files[: cfg.max_images]:
        y = _read(f).astype(np.float64)
        est = estimate_noise([y[None]])
        if est.model == "poisson-gaussian":
            g = gat(y, est.gain, est.sigma, est.offset)
        elif est.model == "gaussian":
            g = (y - est.offset) / est.sigma
        else:
            continue
        planes.append(g.astype(np.float32))
        tops.append(float(np.percentile(g, 99.9)))
    c = float(np.median(tops)) if tops else 1.0
    return [p / np.float32(c) for p in planes], 1.0 / c


def load_train400(cfg: PretrainConfig) -> list[np.ndarray]:
    files = sorted((Path(cfg.data) / cfg.train400).glob("*.png"))[: cfg.max_images]
    return [(_read(f) / 255.0).astype(np.float32) for f in files]


def load_validation(cfg: PretrainConfig) -> list[tuple[str, np.ndarray]]:
    root = Path(cfg.data) / "w2s" / "clean"
    out = []
    for fov in cfg.val_fovs:
        f = root / f"fov{fov:03d}_ch1.png"
        if f.is_file():
            out.append((f.stem, _read(f)[128:384, 128:384].astype(np.float32)))
    return out


def validate(net: P.ConditionedUNet, cfg: PretrainConfig, pairs) -> dict[str, float]:
    """Mean PSNR (dB) of zero-shot denoising per sigma over the validation images."""
    net.eval()
    result = {}
    for sigma in cfg.val_sigmas:
        values = []
        for i, (_, clean) in enumerate(pairs):
            noisy = simulate(clean, NoiseParams("gaussian", sigma), seed=1000 + i)
            model = P.model_from_net(net, sigma, 255.0, tta=False)
            values.append(P.psnr(clean, denoise_array(model, noisy)))
        result[f"psnr_sigma{sigma:g}"] = round(float(np.mean(values)), 3) if values else None
    net.train()
    return result


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except Exception:
        return "unknown"


class Run:
    """The state of one pre-training run, saved to and resumed from OUT/checkpoint.pt."""

    def __init__(self, cfg: PretrainConfig, out: Path, device: str = "cpu") -> None:
        self.cfg, self.out = cfg, out
        self.device = torch.device(device)
        out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.net = P.ConditionedUNet(**cfg.arch).to(self.device,
                                                    memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.learning_rate,
                                    betas=(0.9, 0.99))
        self.step, self.seconds = 0, 0.0
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.ckpt = out / "checkpoint.pt"
        if self.ckpt.is_file():
            self._resume()
        elif cfg.init:
            self._start_from(Path(cfg.init))

    def _start_from(self, path: Path) -> None:
        prior = P.load_prior(path)
        if prior.arch != self.cfg.arch:
            raise SystemExit(f"{path} has the network {prior.arch}, not {self.cfg.arch}")
        self.net.load_state_dict(prior.state_dict)
        self.step, self.seconds = prior.history
        self.started_from = prior.provenance
        print(f"started from {path} at step {self.step} ({self.seconds:.0f} s)", flush=True)

    started_from: dict | None = None
    trained_on: str | None = None  # hardware(), saved with the checkpoint

    def _resume(self) -> None:
        state = torch.load(self.ckpt, map_location="cpu", weights_only=False)
        self.started_from = state.get("started_from")
        self.trained_on = state.get("trained_on")
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.step, self.seconds = state["step"], state["seconds"]
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])
        print(f"resumed at step {self.step} ({self.seconds:.0f} s)", flush=True)

    def save(self) -> None:
        state = {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                 "seconds": self.seconds, "rng": self.rng.bit_generator.state,
                 "gen": self.gen.get_state(), "config": asdict(self.cfg),
                 "started_from": self.started_from, "trained_on": self.trained_on}
        tmp = self.ckpt.with_name("checkpoint.tmp")
        torch.save(state, tmp)
        tmp.replace(self.ckpt)


def sample_batch(run: Run, natural: PatchSampler, w2s: PatchSampler | None, w2s_std: float,
                 n: int, micro: PatchSampler | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` noisy patches, their noise std per item, and their clean values (the targets
    of ``target="clean"``; NaN for the W2S noisy captures, which have none)."""
    cfg = run.cfg
    n_w = int(round(n * cfg.w2s_fraction)) if w2s is not None else 0
    n_p = int(round(n * cfg.photon_fraction))
    n_m = int(round(n * cfg.micro_fraction)) if micro is not None else 0
    n_n = n - n_w - n_p - n_m
    clean = torch.from_numpy(natural.sample(n_n))
    lo, hi = cfg.sigma_range
    s = torch.from_numpy(run.rng.uniform(lo, hi, n_n).astype(np.float32)) / 255.0
    y = clean + s.reshape(-1, 1, 1, 1) * torch.randn(clean.shape, generator=run.gen)
    if cfg.sigma_jitter > 0:
        s = s * torch.from_numpy(np.exp(run.rng.normal(0.0, cfg.sigma_jitter, n_n))
                                 .astype(np.float32))
    ys, ss, xs = [y], [s], [clean]
    if n_w:
        ys.append(torch.from_numpy(w2s.sample(n_w)))
        ss.append(torch.full((n_w,), w2s_std))
        xs.append(torch.full_like(ys[-1], float("nan")))
    for count, source in ((n_p, natural), (n_m, micro)):
        if count:
            patches, std, target = photon_patches(source.sample(count), cfg, run.rng)
            ys.append(torch.from_numpy(patches))
            ss.append(torch.from_numpy(std))
            xs.append(torch.from_numpy(target))
    return torch.cat(ys), torch.cat(ss), torch.cat(xs)


def _sampler(run: Run, planes: list[np.ndarray]) -> PatchSampler | None:
    """A sampler of an optional source's ``planes`` drawing from the run's random state
    (None where the source has no planes)."""
    if not planes:
        return None
    sampler = PatchSampler(planes, run.cfg.patch_size, run.cfg.seed)
    sampler.rng = run.rng
    return sampler


def train(cfg: PretrainConfig, out: Path, max_seconds: float | None,
          max_steps: int | None, device: str = "cpu") -> Run:
    run = Run(cfg, out, device)
    dev = run.device
    here = hardware(str(dev))
    if run.trained_on != here:  # a run resumed elsewhere says both
        run.trained_on = here if run.trained_on is None else f"{run.trained_on}, then {here}"
    natural = PatchSampler(load_train400(cfg), cfg.patch_size, cfg.seed)
    natural.rng = run.rng
    w2s_planes, w2s_std = load_w2s(cfg) if cfg.w2s_fraction > 0 else ([], 1.0)
    w2s = _sampler(run, w2s_planes)
    micro_planes = load_micro(cfg) if cfg.micro_fraction > 0 else []
    micro = _sampler(run, micro_planes)
    pairs = load_validation(cfg)
    log = (out / "log.jsonl").open("a")
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    print(f"data: {len(natural.planes)} natural, {len(w2s_planes)} W2S planes "
          f"(W2S noise std {w2s_std * 255:.1f}/255), {len(micro_planes)} W2S clean planes; "
          f"target {cfg.target}", flush=True)
    t_session, t_ckpt, t_val = time.perf_counter(), time.perf_counter(), -math.inf
    # 'seconds' counts CPU time on the CPU (a paused run does not count), else wall time
    clock = time.process_time if dev.type == "cpu" else time.perf_counter
    cpu0 = clock()
    base, ema = run.seconds, None
    lo, hi = P.RATIO_RANGE
    run.net.train()
    while not stop["now"]:
        now = time.perf_counter()
        run.seconds = base + (clock() - cpu0)
        if now - t_val >= cfg.validate_every:
            record = {"step": run.step, "seconds": round(run.seconds, 1), "loss": ema,
                      **validate(run.net, cfg, pairs)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(record, flush=True)
            t_val = time.perf_counter()
        if (max_seconds is not None and now - t_session >= max_seconds) or (
                max_steps is not None and run.step >= max_steps):
            break
        for group in run.opt.param_groups:
            group["lr"] = cfg.lr_at(run.step)
        if cfg.target == "clean":
            y, s, x = (t.to(dev, non_blocking=True) for t in
                       sample_batch(run, natural, w2s, w2s_std, cfg.batch_size, micro))
            loss = P.conditioned_dsm_loss(run.net, y, s, x)
        else:
            half = (cfg.batch_size + 1) // 2  # antithetic pairs share y, s and the ratio
            y, s, _ = sample_batch(run, natural, w2s, w2s_std, half, micro)
            ratio = torch.from_numpy(run.rng.uniform(lo, hi, half).astype(np.float32))
            u = torch.randn(y.shape, generator=run.gen)
            y, s, ratio, u = (t.to(dev, non_blocking=True) for t in (y, s, ratio, u))
            loss = P.conditioned_loss(run.net, torch.cat([y, y]), torch.cat([s, s]),
                                      torch.cat([ratio, ratio]), torch.cat([u, -u]))
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(run.net.parameters(), cfg.clip_grad)
        run.opt.step()
        run.step += 1
        value = float(loss.detach())
        ema = value if ema is None else 0.99 * ema + 0.01 * value
        if time.perf_counter() - t_ckpt >= cfg.checkpoint_every:
            run.save()
            t_ckpt = time.perf_counter()
    run.seconds = base + (clock() - cpu0)
    run.save()
    print(f"saved step {run.step} ({run.seconds:.0f} s)", flush=True)
    return run


def hardware(device: str) -> str:
    """Where a run trains, in words, for the prior file's provenance."""
    if device.startswith("cuda"):
        return f"GPU: {torch.cuda.get_device_name(torch.device(device))}"
    if device == "mps":
        return "GPU: Apple MPS"
    return f"CPU, {torch.get_num_threads()} torch thread(s)"


def export(out: Path, target: Path, cfg: PretrainConfig) -> Path:
    """Write the checkpoint's weights as a prior file with their provenance."""
    run = Run(cfg, out)
    log = out / "log.jsonl"
    lines = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
    provenance = {
        "data": (f"Train400 (clean, synthetic Gaussian noise sigma {cfg.sigma_range[0]:g}-"
                 f"{cfg.sigma_range[1]:g}/255); "
                 + (f"W2S noisy FOV {cfg.w2s_fovs[0]}-{cfg.w2s_fovs[1]} after the GAT "
                    f"({cfg.w2s_fraction:g} of each batch); " if cfg.w2s_fraction else "")
                 + (f"Train400 as synthetic low-photon captures, peak {cfg.photon_range[0]:g}-"
                    f"{cfg.photon_range[1]:g} photons, after their GAT "
                    f"({cfg.photon_fraction:g} of each batch); " if cfg.photon_fraction else "")
                 + (f"W2S clean FOV {cfg.micro_fovs[0]}-{cfg.micro_fovs[1]} as synthetic "
                    f"low-photon captures after their GAT ({cfg.micro_fraction:g} of each "
                    "batch); " if cfg.micro_fraction else "")
                 + ("denoising score matching against the clean patches"
                    if cfg.target == "clean" else
                    "self-supervised (AR-DAE, noisy images only)")),
        "steps": run.step, "seconds": round(run.seconds, 1), "commit": commit(),
        "config": asdict(cfg), "validation": lines[-1] if lines else None,
        "hardware": run.trained_on or "1 CPU core (taskset -c 0, 1 torch thread)",
    }
    if run.started_from is not None:
        provenance["started_from"] = run.started_from
    return P.save_prior(target, run.net.eval(), provenance)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="checkpoint and log folder")
    p.add_argument("--data", default=PretrainConfig.data)
    p.add_argument("--max-seconds", type=float, help="stop after this many seconds (session)")
    p.add_argument("--max-steps", type=int, help="stop at this total step count")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps, or auto "
                   "(the first of cuda, mps, cpu that this machine has)")
    p.add_argument("--batch-size", type=int, default=PretrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=PretrainConfig.learning_rate,
                   help="Adam's learning rate (before --decay)")
    p.add_argument("--checkpoint-every", type=float, default=PretrainConfig.checkpoint_every)
    p.add_argument("--validate-every", type=float, default=PretrainConfig.validate_every)
    p.add_argument("--max-images", type=int, help="use only this many images per source")
    p.add_argument("--export", type=Path, help="write the checkpoint as a prior file and exit")
    p.add_argument("--init", help="a prior file to start from (a fresh run only)")
    p.add_argument("--decay", type=int, nargs=2, metavar=("FROM", "TO"),
                   help="cosine learning-rate decay between these total step counts")
    p.add_argument("--final-lr", type=float, default=PretrainConfig.final_lr)
    p.add_argument("--arch", help="network, e.g. width=24,depth=3,unshuffle=1")
    p.add_argument("--seed", type=int, default=PretrainConfig.seed)
    p.add_argument("--w2s-fraction", type=float, default=PretrainConfig.w2s_fraction,
                   help="share of each batch drawn from the W2S noisy captures")
    p.add_argument("--sigma-jitter", type=float, default=PretrainConfig.sigma_jitter,
                   help="log-normal spread of the noise std the network is told (synthetic)")
    p.add_argument("--photon-fraction", type=float, default=PretrainConfig.photon_fraction,
                   help="share of each batch drawn as synthetic low-photon captures (GAT)")
    p.add_argument("--micro-fraction", type=float, default=PretrainConfig.micro_fraction,
                   help="share of each batch drawn from W2S clean averages (FOV 4-50) as "
                   "synthetic low-photon captures (GAT)")
    p.add_argument("--target", choices=("ar-dae", "clean"), default=PretrainConfig.target,
                   help="ar-dae: self-supervised on the noisy patch; clean: denoising score "
                   "matching against the clean patch (needs --w2s-fraction 0)")
    p.add_argument("--warmup", type=int, default=PretrainConfig.warmup,
                   help="ramp the learning rate up from 0 over this many steps")
    p.add_argument("--clip-grad", type=float, default=PretrainConfig.clip_grad,
                   help="clip each step's global gradient norm to this value")
    args = p.parse_args(argv)
    if not 0.0 <= args.w2s_fraction <= 1.0:
        p.error(f"--w2s-fraction {args.w2s_fraction:g}: give a share between 0 and 1")
    if not 0.0 <= args.photon_fraction <= 1.0 - args.w2s_fraction:
        p.error(f"--photon-fraction {args.photon_fraction:g}: give a share between 0 and "
                f"{1.0 - args.w2s_fraction:g} (1 - the W2S share)")
    rest = 1.0 - args.w2s_fraction - args.photon_fraction
    if not 0.0 <= args.micro_fraction <= rest + 1e-9:
        p.error(f"--micro-fraction {args.micro_fraction:g}: give a share between 0 and "
                f"{rest:g} (1 - the W2S and photon shares)")
    if args.target == "clean" and args.w2s_fraction > 0:
        p.error("--target clean: the W2S noisy captures have no clean value; give "
                "--w2s-fraction 0")
    if not args.sigma_jitter >= 0.0:
        p.error(f"--sigma-jitter {args.sigma_jitter:g}: give a spread of 0 or more")
    if args.batch_size < 2 or args.batch_size % 2:
        p.error(f"--batch-size {args.batch_size}: give an even number of 2 or more "
                "(antithetic pairs)")
    if not args.lr > 0.0:
        p.error(f"--lr {args.lr:g}: give a positive learning rate")
    if args.warmup < 0:
        p.error(f"--warmup {args.warmup}: give a number of steps, 0 or more")
    if args.clip_grad is not None and not args.clip_grad > 0.0:
        p.error(f"--clip-grad {args.clip_grad:g}: give a positive gradient norm")
    device = available_devices()[0] if args.device == "auto" else args.device
    if device.split(":")[0] not in available_devices():
        p.error(f"--device {args.device}: not available here; this machine has "
                f"{', '.join(available_devices())}")
    torch.set_num_threads(args.threads)
    arch = dict(P.PRIOR_ARCH)
    if args.arch:
        try:
            sizes = {k: int(v) for k, v in (kv.split("=") for kv in args.arch.split(","))}
        except ValueError:
            p.error(f"--arch {args.arch!r}: give name=integer pairs, e.g. width=24,unshuffle=1")
        if set(sizes) - set(arch):
            p.error(f"--arch: unknown {', '.join(sorted(set(sizes) - set(arch)))}; "
                    f"known: {', '.join(arch)}")
        arch.update(sizes)
    cfg = PretrainConfig(data=args.data, checkpoint_every=args.checkpoint_every,
                         validate_every=args.validate_every, max_images=args.max_images,
                         init=args.init, decay=tuple(args.decay) if args.decay else None,
                         final_lr=args.final_lr, arch=arch, seed=args.seed,
                         w2s_fraction=args.w2s_fraction, sigma_jitter=args.sigma_jitter,
                         photon_fraction=args.photon_fraction,
                         micro_fraction=args.micro_fraction, target=args.target,
                         batch_size=args.batch_size,
                         learning_rate=args.lr, warmup=args.warmup,
                         clip_grad=args.clip_grad)
    if args.export:
        print(f"wrote {export(args.out, args.export, cfg)}")
        return
    train(cfg, args.out, args.max_seconds, args.max_steps, device)


if __name__ == "__main__":
    sys.exit(main())
