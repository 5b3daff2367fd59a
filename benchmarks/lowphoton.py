"""Low-photon development benchmark: FMD confocal, W2S wide-field and synthetic two-photon.

Kinds of image (``--kinds``, default all three), each against its clean reference:

- ``fmd``: the 5 FMD confocal pairs; one model per image (a single capture).
- ``w2s``: W2S fields of view 51-58 x channels 0-2 (24 pairs); one model per channel,
  trained on its 8 captures as a user would train on a stack, then denoising each.
- ``twophoton``: synthetic two-photon-like 8-bit captures (fixed seeds) of 3 W2S clean
  images (FOV 1-3, not among the W2S pairs above) and 3 Set12 images (08, 10, 12): scaled to
  0-30 photons, gain 8.5, read noise 11, offset 22, rounded and clipped to 0..255
  (``napari_noise2score._sample_data.two_photon_like``); the reference is the capture's
  exact expectation. One model per image.

Methods, in one run: the noisy input; napari-noise2score ``noise="auto"`` (the default
route, named in the output, with the Wiener step after Tweedie's) trained for ``--seconds``
(or ``--max-steps``) per model, and the same model without the step (``--no-wiener``); the
shipped prior with no training (bound to the model group's estimated noise, as ``denoise
--model pretrained``);
with ``--routes`` also the other routes from models of their own (``none``: counts, scored
with each mixed mode; ``anscombe``); with ``--inits`` also models started elsewhere
(``scratch``: no pretrained prior); generalized Anscombe + BM3D with the same estimated
parameters; Noise2Void (CAREamics) when ``--peers-python`` is given, one model per
group like ours, trained for the same ``--seconds``. PSNR/SSIM on the 0-255
scale (outputs clipped to it), and the intensity-matched PSNR (``psnr_matched``: the output's
least-squares affine fit to the reference, clipped to 0-255, the same for every method): the
W2S references are not on their captures' intensity scale (a capture is about 0.3-0.9 x its
reference plus an offset), which puts a floor under the plain PSNR that no denoiser can
lower. Seconds per image (training shared by a W2S channel's 8 images is divided among
them). ``n2s auto, shrink 1`` is the same model with stop 13's Wiener step (gain noise std
1 x sigma instead of the route's ``wiener.SHRINK_*``).

    python benchmarks/lowphoton.py ../shared/data --seconds 120 --threads 2 \\
        --out benchmarks/results/lowphoton.json
    # development, fixed steps (timings are not comparable between machines):
    python benchmarks/lowphoton.py ../shared/data --max-steps 1500 --threads 1 \\
        --routes none,anscombe --out /tmp/lowphoton.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_noise2score import denoise, train
from napari_noise2score._sample_data import two_photon_like
from napari_noise2score.core import inference, prior
from napari_noise2score.core.noise import MIXED_MODES
from napari_noise2score.core.planewise import config_for_plane
from napari_noise2score.core.route import describe_route

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))
from gat_bm3d import gat_bm3d  # noqa: E402

KINDS = ("fmd", "w2s", "twophoton")
FMD_IMAGES = ("BPAE_B", "BPAE_G", "BPAE_R", "fish", "mice")
W2S_FOVS = tuple(range(51, 59))
TWOPHOTON_SOURCES = (("w2s", "fov001_ch0"), ("w2s", "fov002_ch1"), ("w2s", "fov003_ch2"),
                     ("set12", "08"), ("set12", "10"), ("set12", "12"))
ROUTES = ("none", "anscombe")


class UsageError(Exception):
    """Bad arguments or data: reported as one line, exit status 2, nothing written."""


@dataclass
class Group:
    """Images denoised by one model (trained on all of them)."""

    kind: str
    name: str
    names: list[str]
    noisy: list[np.ndarray]
    clean: list[np.ndarray]


def _read(path: Path) -> np.ndarray:
    if not path.is_file():
        raise UsageError(f"missing data file {path}")
    if path.suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    import imageio.v3 as iio

    return iio.imread(path)


def check_data(root: Path, kinds: list[str]) -> None:
    """Fail (one line) before any work when a file a kind needs is missing."""
    if not root.is_dir():
        raise UsageError(f"data folder not found: {root}")
    for kind in kinds:
        for path in _paths(root, kind):
            if not path.is_file():
                raise UsageError(f"{kind}: missing data file {path}")


def _paths(root: Path, kind: str) -> list[Path]:
    if kind == "fmd":
        return [root / "fmd_confocal" / d / f"{n}.tif" for n in FMD_IMAGES
                for d in ("noisy", "clean")]
    if kind == "w2s":
        return [root / "w2s" / d / f"fov{f:03d}_ch{c}.png" for f in W2S_FOVS for c in range(3)
                for d in ("noisy", "clean")]
    return [_twophoton_source(root, s, n) for s, n in TWOPHOTON_SOURCES]


def _twophoton_source(root: Path, source: str, name: str) -> Path:
    return root / "w2s" / "clean" / f"{name}.png" if source == "w2s" else root / "set12" / \
        f"{name}.png"


def groups(root: Path, kind: str) -> Iterator[Group]:
    """The model groups of one kind of image."""
    if kind == "fmd":
        for n in FMD_IMAGES:
            noisy = root / "fmd_confocal" / "noisy" / f"{n}.tif"
            clean = _read(root / "fmd_confocal" / "clean" / f"{n}.tif").astype(np.float64)
            yield Group(kind, n, [n], [_read(noisy)], [clean])
    elif kind == "w2s":
        for c in range(3):
            names = [f"fov{f:03d}_ch{c}" for f in W2S_FOVS]
            paths = [root / "w2s" / "noisy" / f"{n}.png" for n in names]
            clean = [_read(root / "w2s" / "clean" / f"{n}.png").astype(np.float64)
                     for n in names]
            yield Group(kind, f"ch{c}", names, [_read(p) for p in paths], clean)
    else:
        for i, (source, n) in enumerate(TWOPHOTON_SOURCES):
            noisy, clean = two_photon_like(_read(_twophoton_source(root, source, n)),
                                           seed=1000 + i)
            name = f"{source}_{n}"
            yield Group(kind, name, [name], [noisy], [clean])


def matched_psnr(clean: np.ndarray, x: np.ndarray) -> float:
    """PSNR (0-255) of the least-squares affine fit of ``x`` to ``clean``, clipped to 0-255."""
    c = np.asarray(clean, np.float64).ravel()
    a = np.stack([np.asarray(x, np.float64).ravel(), np.ones(c.size)], axis=1)
    fit = np.clip(a @ np.linalg.lstsq(a, c, rcond=None)[0], 0, 255)
    return float(10 * np.log10(255.0**2 / np.mean((fit - c) ** 2)))


def metrics(clean: np.ndarray, x: np.ndarray) -> dict[str, float]:
    x = np.clip(np.asarray(x, np.float64), 0, 255)
    return {"psnr": float(peak_signal_noise_ratio(clean, x, data_range=255)),
            "ssim": float(structural_similarity(clean, x, data_range=255)),
            "psnr_matched": matched_psnr(clean, x)}


@contextlib.contextmanager
def wiener_shrink(value: float) -> Iterator[None]:
    """Denoise with the Wiener step's gain noise std ``value`` x sigma on every route."""
    saved = inference.SHRINK_GAUSSIAN, inference.SHRINK_ANSCOMBE
    inference.SHRINK_GAUSSIAN = inference.SHRINK_ANSCOMBE = value
    try:
        yield
    finally:
        inference.SHRINK_GAUSSIAN, inference.SHRINK_ANSCOMBE = saved


def budget(args: argparse.Namespace) -> dict:
    if args.max_steps:
        return {"max_seconds": None, "max_steps": args.max_steps}
    return {"max_seconds": args.seconds}


def score_model(model, group: Group, train_s: float, label: str, rows: list[dict],
                modes: tuple[str, ...]) -> None:
    """Denoise every image of the group with ``model`` (each mode given) into ``rows``."""
    share = train_s / len(group.noisy)
    for mode in modes:
        m = model if mode == "" else model.with_options(mixed_mode=mode)
        key = label if mode == "" else f"{label}[{mode}]"
        for row, noisy, clean in zip(rows, group.noisy, group.clean, strict=True):
            t0 = time.perf_counter()
            out = denoise(noisy, m)
            row[key] = {**metrics(clean, out), "seconds": share + time.perf_counter() - t0}


def run_group(group: Group, args: argparse.Namespace) -> list[dict]:
    """All methods on one group; one row per image."""
    rows = [{"image": n, "noisy": {**metrics(c, y), "seconds": 0.0}}
            for n, y, c in zip(group.names, group.noisy, group.clean, strict=True)]
    t0 = time.perf_counter()
    auto = train(group.noisy, noise="auto", seed=args.seed, **budget(args))
    auto_s = time.perf_counter() - t0
    cfg = auto.config
    info = {"noise": cfg.noise, "gain": cfg.gain, "sigma": cfg.sigma, "offset": cfg.offset,
            "transform": cfg.transform, "mixed_mode": cfg.mixed_mode,
            "decorrelate": cfg.decorrelate, "steps": auto.steps, "train_seconds": auto_s,
            "route": describe_route(cfg)}
    plane_cfgs = [config_for_plane(cfg, noisy) for noisy in group.noisy]  # as n2s uses them
    for row, own in zip(rows, plane_cfgs, strict=True):
        if own is not cfg:
            row["_own_noise"] = {"gain": own.gain, "sigma": own.sigma, "offset": own.offset}
    print(f"{group.kind}/{group.name}: {cfg.noise} gain {cfg.gain} sigma {cfg.sigma} "
          f"offset {cfg.offset:.3g} stride {cfg.decorrelate}; {info['route']}; "
          f"{auto.steps} steps", flush=True)
    score_model(auto, group, auto_s, "n2s auto", rows, ("",))  # with the Wiener step
    with wiener_shrink(1.0):
        score_model(auto, group, auto_s, "n2s auto, shrink 1", rows, ("",))
    score_model(auto.with_options(wiener=False), group, auto_s, "n2s auto, no Wiener", rows,
                ("",))
    t0 = time.perf_counter()  # the shipped prior bound to the group's noise, no training
    zero_shot, _ = prior.bind(prior.unbound_model(), group.noisy)
    score_model(zero_shot, group, time.perf_counter() - t0, "prior zero-shot", rows, ("",))
    for route in args.routes:
        if not cfg.poisson_type:
            break
        if route == cfg.transform:
            model, took = auto, auto_s
        else:
            t0 = time.perf_counter()
            model = train(group.noisy, noise="auto", transform=route, seed=args.seed,
                          **budget(args))
            took = time.perf_counter() - t0
        modes = MIXED_MODES[:2] if route == "none" else ("",)
        score_model(model, group, took, f"n2s {route}", rows, modes)
    for init in args.inits:
        t0 = time.perf_counter()
        model = train(group.noisy, noise="auto", init=init, seed=args.seed, **budget(args))
        score_model(model, group, time.perf_counter() - t0, f"n2s init={init}", rows, ("",))
    for row, noisy, clean, own in zip(rows, group.noisy, group.clean, plane_cfgs,
                                      strict=True):
        t0 = time.perf_counter()
        bm = peer_bm3d(noisy, own)
        row["gat+bm3d"] = {**metrics(clean, bm), "seconds": time.perf_counter() - t0}
    if args.peers_python:
        for row, result in zip(rows, run_n2v(args.peers_python, group, args), strict=True):
            row["n2v"] = result
    for row in rows:
        row["_model"] = info
        print(f"  {row['image']}: " + ", ".join(
            f"{k} {v['psnr']:.2f}" for k, v in row.items() if isinstance(v, dict) and "psnr" in v),
            flush=True)
    return rows


def peer_bm3d(noisy: np.ndarray, cfg) -> np.ndarray:
    """GAT + BM3D with the parameters the auto model estimated (BM3D alone for Gaussian):
    those the model denoises the plane with (its own where the stack's overstate it)."""
    y = noisy.astype(np.float64)
    if cfg.poisson_type:
        return gat_bm3d(y, cfg.gain, cfg.sigma or 0.0, cfg.offset)
    import bm3d

    return np.asarray(bm3d.bm3d(y, sigma_psd=cfg.sigma or 1.0))


def run_n2v(peers_python: str, group: Group, args: argparse.Namespace) -> list[dict]:
    """Noise2Void (CAREamics) trained for ``args.seconds`` on the group's planes together
    (one model per group, as ours), one result per plane; the seconds are divided among
    them, as ours are."""
    import tifffile

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "noisy.tif"
        tifffile.imwrite(source, np.stack(group.noisy))
        out = Path(tmp) / "n2v.tif"
        t0 = time.perf_counter()
        proc = subprocess.run(
            [peers_python, str(HERE / "peers" / "n2v_careamics.py"), str(source), str(out),
             "--max-seconds", str(args.seconds), "--seed", str(args.seed)],
            capture_output=True, text=True)
        took = (time.perf_counter() - t0) / len(group.noisy)
        if proc.returncode != 0:
            error = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            return [{"error": error} for _ in group.noisy]
        planes = tifffile.imread(out).reshape(len(group.noisy), *group.noisy[0].shape)
    return [{**metrics(clean, plane), "seconds": took}
            for plane, clean in zip(planes, group.clean, strict=True)]


def write_variant_results(path: Path, results: dict[str, list[dict]], fields: int) -> dict:
    """Print and write (with the command) the per-label means of each variant's first
    ``fields`` figures, from rows {"image": name, variant: (figure, ...)}; the means."""
    table = {label: {v: [round(float(np.mean([r[v][i] for r in rows])), 3)
                         for i in range(fields)] for v in rows[0] if v != "image"}
             for label, rows in results.items()}
    print(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": " ".join(sys.argv), "table": table,
                                "images": results}, indent=1))
    return table


def summarise(results: dict[str, list[dict]]) -> dict:
    """Per kind and method: mean PSNR/SSIM/seconds, and the worst gain over noisy."""
    table = {}
    for kind, rows in results.items():
        methods = [k for k in rows[0] if not k.startswith("_") and k != "image"]
        table[kind] = {}
        for m in methods:
            ok = [r for r in rows if "psnr" in r.get(m, {})]
            if len(ok) != len(rows):
                continue
            table[kind][m] = {
                "psnr": float(np.mean([r[m]["psnr"] for r in ok])),
                "ssim": float(np.mean([r[m]["ssim"] for r in ok])),
                "seconds": float(np.mean([r[m]["seconds"] for r in ok])),
                "min_gain": float(min(r[m]["psnr"] - r["noisy"]["psnr"] for r in ok)),
            }
            if all("psnr_matched" in r[m] for r in ok):
                table[kind][m]["psnr_matched"] = float(np.mean(
                    [r[m]["psnr_matched"] for r in ok]))
                table[kind][m]["min_gain_matched"] = float(min(
                    r[m]["psnr_matched"] - r["noisy"]["psnr_matched"] for r in ok))
    return table


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="the shared data folder (fmd_confocal, w2s, set12)")
    p.add_argument("--seconds", type=float, default=120.0, help="training budget per model")
    p.add_argument("--max-steps", type=int, help="train this many steps instead (development)")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma list of {', '.join(KINDS)}")
    p.add_argument("--routes", default="",
                   help=f"also train and score these routes: comma list of {', '.join(ROUTES)}")
    p.add_argument("--inits", default="",
                   help="also train and score models started from these inits (comma list: "
                   "scratch, pretrained)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--groups", type=int, help="only the first N models of each kind (smoke tests)")
    p.add_argument("--only", default="", help="only these models, by name (comma list: "
                   "FMD image names, ch0-ch2 for W2S, e.g. w2s_fov001_ch0 or set12_08)")
    p.add_argument("--peers-python", help="python of the peers venv (Noise2Void); omit to skip")
    p.add_argument("--out", type=Path, default=HERE / "results" / "lowphoton.json")
    args = p.parse_args(argv)
    args.kinds = [k for k in args.kinds.split(",") if k]
    args.routes = [r for r in args.routes.split(",") if r]
    args.inits = [r for r in args.inits.split(",") if r]
    args.only = [n for n in args.only.split(",") if n]
    bad = [k for k in args.kinds if k not in KINDS] + [r for r in args.routes if r not in ROUTES]
    if bad or not args.kinds:
        raise UsageError(f"unknown kind or route {', '.join(bad) or '(none given)'}; kinds: "
                         f"{', '.join(KINDS)}; routes: {', '.join(ROUTES)}")
    if not args.seconds > 0 or (args.max_steps is not None and args.max_steps < 1):
        raise UsageError("--seconds must be > 0 and --max-steps >= 1")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be >= 1")
    if args.peers_python and not Path(args.peers_python).is_file():
        raise UsageError(f"--peers-python: no such file {args.peers_python}")
    if args.out.exists() and args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; give a .json file")
    check_data(args.data, args.kinds)
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
    except UsageError as exc:
        print(f"lowphoton: error: {exc}", file=sys.stderr)
        return 2
    from napari_noise2score.core.device import cpu_threads

    torch.set_num_threads(args.threads or cpu_threads())
    start = time.perf_counter()
    results = {}
    for kind in args.kinds:
        chosen = [g for g in groups(args.data, kind) if not args.only or g.name in args.only]
        rows = [row for g in chosen[: args.groups] for row in run_group(g, args)]
        if rows:
            results[kind] = rows
    table = summarise(results)
    report = {"command": " ".join(sys.argv), "budget": budget(args),
              "machine": {"torch_threads": torch.get_num_threads(),
                          "python": platform.python_version(), "torch": torch.__version__},
              "wall_seconds": time.perf_counter() - start, "table": table, "images": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    for kind, methods in table.items():
        print(f"\n{kind} ({len(results[kind])} images)")
        print(f"{'method':34s}   PSNR    SSIM  min gain  matched  min gain  s/image")
        for m, v in methods.items():
            print(f"{m:34s} {v['psnr']:6.2f} {v['ssim']:7.4f} {v['min_gain']:+8.2f} "
                  f"{v.get('psnr_matched', float('nan')):8.2f} "
                  f"{v.get('min_gain_matched', float('nan')):+8.2f} {v['seconds']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
