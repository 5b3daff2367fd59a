"""Command line: ``napari-noise2score train|denoise|run|estimate|demo|export`` over the API."""

from __future__ import annotations

import argparse
import functools
import json
import re
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ._commands import estimate_files
from ._sample_data import SAMPLE_GAIN, SAMPLE_READ_SIGMA, clean_sample, noisy_sample
from .batch.jobs import (
    DISTRIBUTE,
    DONE,
    SKIPPED,
    Job,
    check_job_outputs,
    expand_inputs,
    is_finished,
    plan_jobs,
)
from .core.config import AUTO, DEVICES, TRAIN_OPTIONS, TRANSFORMS, TrainConfig
from .core.errors import Noise2ScoreError
from .core.noise import GAUSSIAN, MIXED_MODES, NOISE_MODELS
from .core.stack import DTYPES
from .export.cli import add_export_parser, run_export
from .gui import run_gui
from .io.files import write_tiff
from .io.lazy import TRAIN_MAX_BYTES, close_lazy, open_lazy, training_planes
from .io.outputs import check_location

# torch-backed modules (api, pipeline, batch.run, core.training, core.inference,
# core.blind, core.device) are imported inside the commands that use them, so that the
# command line starts, prints its help and refuses bad usage without loading torch.

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TERMINATED = 128 + signal.SIGTERM


class BatchFailed(Exception):
    """Some files of a batch failed (each was reported); the exit status is 1."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it ends the run as Ctrl-C does: running
    files stop and every temporary output is removed."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _add_noise_options(p: argparse.ArgumentParser, with_model: bool) -> None:
    g = p.add_argument_group("noise (intensities in the input's own units)")
    if with_model:
        g.add_argument("--noise", choices=(AUTO, *NOISE_MODELS), default=None,
                       help="noise model; 'auto' (the default) estimates it and its "
                       "parameters from the images; noise parameters given alone name "
                       "it (--sigma: gaussian, --gain: poisson, both: poisson-gaussian)")
        g.add_argument("--offset", type=float, default=0.0,
                       help="camera offset (dark level) subtracted before denoising")
    g.add_argument("--sigma", type=float,
                   help="Gaussian std, or the read-noise std of poisson-gaussian")
    g.add_argument("--gain", type=float, help="Poisson gain zeta: the intensity of one count")
    g.add_argument("--shape", type=float, help="Gamma shape k (> 1)")
    _add_input_options(g)


def _add_input_options(g) -> None:
    g.add_argument("--axes", help="axes of the input, e.g. YX, TYX, ZYX (default: inferred)")
    g.add_argument("--series", type=int, metavar="N",
                   help="image series of a TIFF that holds several (0, 1, ...; needed then)")


def _add_train_options(p: argparse.ArgumentParser) -> None:
    _add_noise_options(p, with_model=True)
    d = TrainConfig()
    g = p.add_argument_group("training")
    g.add_argument("--max-seconds", type=float, default=d.max_seconds,
                   help=f"training time budget (default: {d.max_seconds:g})")
    g.add_argument("--steps", type=int, dest="max_steps", help="training steps (default: by time)")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--device", default=d.device,
                   help=f"one of {', '.join(DEVICES)} (default: auto)")
    g.add_argument("--mixed-mode", choices=MIXED_MODES, default=d.mixed_mode,
                   help="Tweedie form for poisson-gaussian noise (in photon counts)")
    g.add_argument("--transform", choices=(AUTO, *TRANSFORMS), default=AUTO,
                   help="where poisson and poisson-gaussian noise is learned: 'anscombe' "
                   "after the generalized Anscombe transform (Gaussian Tweedie, then the "
                   "exact unbiased inverse), 'none' in photon counts with --mixed-mode "
                   "(default: auto, chosen from the data and printed)")
    g.add_argument("--patch-size", type=int, default=d.patch_size)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--lr", type=float, dest="learning_rate", default=d.learning_rate)
    g.add_argument("--width", type=int, help="network width, 1 to 128 (default: by device)")
    g.add_argument("--depth", type=int, help="network depth, 1 to 6 (default: by device)")
    g.add_argument("--decorrelate", type=int, choices=(1, 2),
                   help="learn and denoise on 2x2 sub-images (2) for noise correlated between "
                   "neighbouring pixels, or not (1) (default: from the measured correlation)")
    g.add_argument("--init", default=d.init, metavar="pretrained|scratch|MODEL.n2s",
                   help="where training starts: fine-tune the shipped prior, from scratch, or "
                   "fine-tune a model file (default: the prior when the noise is in its "
                   "range, else scratch)")


def _add_batch(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("batch (INPUT: files, folders, glob patterns such as 'raw/**/*.tif')")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="dask.distributed scheduler (e.g. tcp://host:8786): spread the files, "
                   "or the tiles of a large file, over its workers (default: this machine)")
    g.add_argument("--distribute", choices=DISTRIBUTE, default="auto",
                   help="with --scheduler: one task per file, per tile, or auto (tiles of "
                   "large files when there are fewer files than worker threads; default)")
    g.add_argument("--workers", type=int, default=1,
                   help="files denoised at once on this machine, without --scheduler "
                   "(default: 1; each uses all cores)")
    g.add_argument("--threads", type=int,
                   help="torch threads per process (here, or on each worker); the same count "
                   "gives bit-identical results (default: all cores here, 1 per dask task)")
    g.add_argument("--overwrite", action="store_true",
                   help="redo outputs that exist (default: skip them, so a re-run resumes)")


def _add_tiling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tile", type=int,
                   help="tile size in pixels (default: what fits in the available memory)")
    p.add_argument("--overlap", type=int,
                   help="tile halo in pixels (default: the network's receptive field)")
    p.add_argument("--memory", type=float, metavar="MIB",
                   help="memory for one tile's forward pass, in MiB, when --tile is not given "
                   "(default: a quarter of the available memory, at most 384)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average each tile's score over its 8 flips and quarter turns; "
                   "--no-tta: one forward pass per tile, 8x faster, noisier (default: the "
                   "model's setting; auto: the average for inputs up to 3.1 Mpx)")
    p.add_argument("--wiener", action=argparse.BooleanOptionalAction, default=None,
                   help="after Tweedie's step, a nonlocal Wiener step where the noise is "
                   "white Gaussian there (Gaussian noise, the Anscombe route); --no-wiener: "
                   "skip it, faster (default: the model's setting; auto: by the size rule of "
                   "--tta)")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="data type of the results: float32 (default), or the input's own "
                   "(same: rounded and clipped to its integer range)")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (the error contract), not the whole usage text."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="napari-noise2score", description="Self-supervised Noise2Score "
                     "denoising: learn the score of your noisy images, then denoise them with "
                     "Tweedie's formula.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on noisy images")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    p.add_argument("-o", "--output", type=Path, required=True, help="model file to write")
    _add_train_options(p)

    p = sub.add_parser("denoise", help="denoise images with a trained model")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    p.add_argument("--model", type=Path, required=True,
                   help="a .n2s model, a bioimage.io package (.zip) exported by this plugin, "
                   "or 'pretrained': the shipped prior (Gaussian noise; give --sigma or let "
                   "--noise auto estimate it), no training")
    p.add_argument("--noise", choices=(AUTO, GAUSSIAN.name), default=None,
                   help="with --model pretrained: 'auto' (the default) estimates the noise "
                   "from the inputs; 'gaussian' needs --sigma")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output .tif/.tiff or .zarr for one input, else a folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--mixed-mode", choices=MIXED_MODES,
                   help="Tweedie form for poisson-gaussian noise (default: the model's)")
    p.add_argument("--blind", nargs="?", const="search", choices=("search", "score"),
                   help="find the noise parameter on the inputs first (grid search, or "
                   "'score': read from the learned score), print it, then denoise with it")
    _add_noise_options(p, with_model=False)
    _add_tiling(p)
    _add_batch(p)

    p = sub.add_parser("run", help="train on the inputs, then denoise them (the main job)")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output .tif/.tiff or .zarr for one input, else a folder")
    p.add_argument("--save-model", type=Path, help="also keep the trained model here")
    _add_train_options(p)
    _add_tiling(p)
    _add_batch(p)

    p = sub.add_parser("estimate", help="estimate the noise model and its parameters")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    _add_input_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per input")

    p = sub.add_parser("demo", help="denoise the bundled synthetic sample and report PSNR")
    p.add_argument("-o", "--output", type=Path, default=Path("noise2score-demo"),
                   help="folder for noisy.tif, denoised.tif, clean.tif and model.n2s")
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--steps", type=int, help="train for this many steps instead")
    p.add_argument("--device", default="auto")
    add_export_parser(sub)
    p = sub.add_parser("gui", help="open napari with both widgets and FILES (or the sample)")
    p.add_argument("files", nargs="*", type=Path, help="images to open (default: the sample)")
    return parser


def _config(args: argparse.Namespace) -> TrainConfig:
    from .api import make_config

    options = {name: getattr(args, name) for name in TRAIN_OPTIONS if name != "transform"}
    return make_config(**options, transform=None if args.transform == AUTO else args.transform)


def _train_with_bar(images, config: TrainConfig):
    from .core.training import NoiseEstimated, TrainDone, TrainNote, iter_training

    with tqdm(total=100, desc="training", unit="%", file=sys.stderr,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}") as bar:
        for update in iter_training(images, config):
            if isinstance(update, TrainDone):
                bar.update(100 - bar.n)
                return update.model
            if isinstance(update, NoiseEstimated):
                line = f"estimated {update.estimate.describe()}"
                bar.write(f"{line}; {update.route}" if update.route else line, file=sys.stderr)
                continue
            if isinstance(update, TrainNote):
                bar.write(update.text, file=sys.stderr)
                continue
            bar.update(int(update.fraction * 100) - bar.n)
            bar.set_postfix_str(
                f"step {update.step} loss {update.loss:.4f} sigma_a {update.sigma_a:.3g} "
                f"ETA {update.eta:.0f}s", refresh=False)
    raise AssertionError("training ended without a model")  # pragma: no cover


def _training_images(paths: Sequence[Path], axes: str | None, skip_unreadable: bool = False,
                     series: int | None = None) -> list[np.ndarray]:
    """Each input as (N, Y, X) planes to train on; large inputs give a bounded sample. With
    ``skip_unreadable``, a file that cannot be opened is left out (it fails again, and is
    counted, when denoised); the first error is raised if none opens."""
    images, first_error = [], None
    for path in paths:
        try:
            data, file_axes = open_lazy(path, axes, series)
            try:
                planes = training_planes(data, file_axes)
            finally:
                close_lazy(data)
        except Noise2ScoreError as exc:
            if not skip_unreadable:
                raise
            first_error = first_error or exc
            continue
        if planes.size < data.size:
            print(f"{path.name}: training on {planes.shape[0]} planes of {planes.shape[1]} x "
                  f"{planes.shape[2]} pixels ({TRAIN_MAX_BYTES // 2**20} MiB sample of "
                  f"{data.nbytes / 2**30:.2f} GiB)", file=sys.stderr)
        images.append(planes)
    if not images and first_error is not None:
        raise first_error
    return images


def _train_on_files(paths: Sequence[Path], config: TrainConfig, skip_unreadable: bool = False,
                    series: int | None = None):
    """Train on the inputs' planes (axes resolved per file), keeping the user's axes."""
    images = _training_images(paths, config.axes, skip_unreadable, series)
    model = _train_with_bar(images, replace(config, axes=None))
    model.config = replace(model.config, axes=config.axes)
    return model


def _tta_line(model, job, args) -> str | None:
    """Which averaging the denoising uses: for one input, what its size gives (None when
    it cannot be opened: its error, printed next, is then the only line)."""
    from .core.inference import describe_tta

    n_pixels = None
    if job is not None and model.config.tta is None and (args.overwrite
                                                         or not job.output.exists()):
        try:
            data = open_lazy(job.source, args.axes, args.series)[0]
        except Noise2ScoreError:
            return None
        n_pixels = data.size
        close_lazy(data)
    return describe_tta(model.config.tta, n_pixels)


def _denoise_files(model, jobs, args) -> None:
    """Denoise the jobs as a batch: skip finished outputs, report failures, print a summary;
    raise BatchFailed when any file failed."""
    from .batch.run import denoise_batch

    model = model.with_options(mixed_mode=getattr(args, "mixed_mode", None), tta=args.tta,
                               wiener=args.wiener)
    model.noise_params(sigma=args.sigma, gain=args.gain, shape=args.shape)  # fail now
    memory = None if args.memory is None else int(args.memory * 2**20)
    single = len(jobs) == 1
    line = _tta_line(model, jobs[0] if single else None, args)
    if line is not None:
        print(f"denoising: {in_flag_terms(line)}", file=sys.stderr)
    tile_bars = (args.workers <= 1 or single) if args.scheduler is None else single

    def progress_for(job: Job):
        bars: list = []  # made on the first tile, so that waiting files show no bar

        def progress(done: int, total: int) -> None:
            if not bars:
                bars.append(tqdm(desc=f"denoising {job.source.name}", unit="tile",
                                 file=sys.stderr, leave=False))
            bar = bars[0]
            bar.total = total
            bar.update(done - bar.n)
            if done >= total:
                bar.close()
        return progress

    def on_result(result) -> None:
        if result.status == DONE:
            print(f"wrote {result.job.output} ({result.seconds:.1f} s)")
        elif result.status == SKIPPED:
            print(f"skipped {result.job.output} (exists; --overwrite redoes it)")
        elif not single:
            print(f"failed {result.job.source}: {in_flag_terms(result.error)}",
                  file=sys.stderr)

    summary = denoise_batch(
        jobs, model, client=args.scheduler, workers=args.workers, overwrite=args.overwrite,
        threads=args.threads, distribute=args.distribute,
        on_result=on_result, progress_for=progress_for if tile_bars else None,
        axes=args.axes, sigma=args.sigma, gain=args.gain, shape=args.shape,
        tile=args.tile, overlap=args.overlap, memory=memory, dtype=args.dtype,
        series=args.series)
    if summary.cleaned:
        print(f"removed {len(summary.cleaned)} temporary files left by killed runs",
              file=sys.stderr)
    failed = summary.failed
    if single and failed:  # one file: its error, whatever it is, is the command's
        raise Noise2ScoreError(failed[0].error)
    print(summary.line())
    if failed:
        names = ", ".join(str(r.job.source) for r in summary.failed)
        raise BatchFailed(f"{len(summary.failed)} of {len(summary.results)} files failed: {names}")


def _check_batch_options(args: argparse.Namespace) -> None:
    """Refuse impossible tiling and batch numbers before any work (not after training)."""
    for name, value, least in (("workers", args.workers, 1), ("threads", args.threads, 1),
                               ("tile", args.tile, 1), ("overlap", args.overlap, 0)):
        if value is not None and value < least:
            raise Noise2ScoreError(f"{name} must be >= {least}, not {value}")
    if args.memory is not None and not args.memory > 0:
        raise Noise2ScoreError(f"memory must be > 0 MiB, not {args.memory:g}")


def _pending(jobs, args) -> list:
    return [j for j in jobs if args.overwrite or not is_finished(j)]


def cmd_train(args: argparse.Namespace) -> None:
    from .pipeline import check_model_output

    config = _config(args)
    inputs = expand_inputs(args.inputs)
    check_model_output(args.output, config, inputs)  # before training, not after
    model = _train_on_files(inputs, config, series=args.series)
    model.save(args.output)
    print(f"wrote {args.output} ({model.steps} steps in {model.seconds:.0f} s)")


def cmd_denoise(args: argparse.Namespace) -> None:
    from .pipeline import load_model

    _check_batch_options(args)
    jobs = plan_jobs(args.inputs, args.output, protect=[args.model])  # before any work
    check_job_outputs(_pending(jobs, args))
    model = load_model(args.model, args.device)
    model = _bind_prior(model, [j.source for j in jobs], args)
    if args.blind:
        _blind_parameter(model, [j.source for j in jobs], args)
    _denoise_files(model, jobs, args)


def _bind_prior(model, paths: Sequence[Path], args: argparse.Namespace):
    """The pretrained prior bound to the inputs' noise (given, or estimated on a bounded
    sample of all inputs) and intensity scale; a noise-conditioned model told --sigma."""
    from .pipeline import bind_to_files

    if args.noise == GAUSSIAN.name and args.sigma is None:
        raise Noise2ScoreError("--noise gaussian needs --sigma")
    model, line = bind_to_files(model, paths, args.axes, args.series, args.sigma, args.gain,
                                args.shape)
    if line:
        print(line, flush=True)
    return model


def _blind_parameter(model, paths: Sequence[Path], args: argparse.Namespace) -> None:
    """Find the noise parameter on a bounded sample of all inputs; print it; use it."""
    from .core.blind import MAX_PIXELS, find_parameter

    name = model.config.kind.searched
    if getattr(args, name) is not None:
        raise Noise2ScoreError(f"give either --{name} or --blind, not both")
    budget = 4 * MAX_PIXELS // len(paths)
    planes = [p for path in paths
              for p in training_planes(*open_lazy(path, args.axes, args.series), budget)]
    result = find_parameter(model, planes, args.blind)
    print(result.describe(), flush=True)
    setattr(args, name, result.value)


def cmd_run(args: argparse.Namespace) -> None:
    from .pipeline import check_model_output

    config = _config(args)
    _check_batch_options(args)
    jobs = plan_jobs(args.inputs, args.output)  # fail before training, not after
    pending = _pending(jobs, args)
    if not pending:
        print(f"all {len(jobs)} outputs exist; nothing to do (--overwrite redoes them)")
        return
    check_job_outputs(pending)
    if args.save_model:
        check_model_output(args.save_model, config, [j.source for j in jobs],
                           [j.output for j in jobs])
    model = _train_on_files([j.source for j in jobs], config, skip_unreadable=True,
                            series=args.series)
    if args.save_model:
        model.save(args.save_model)
        print(f"wrote {args.save_model}")
    _denoise_files(model, jobs, args)


def cmd_estimate(args: argparse.Namespace) -> None:
    """Each file's estimate, or its error; one failure does not stop the others."""
    results = estimate_files(args.inputs, args.axes, args.series)
    failed = [(path, error) for path, _, error in results if error is not None]
    if len(results) == 1 and failed:  # one file: its error is the command's
        raise Noise2ScoreError(failed[0][1])
    for path, estimate, error in results:
        if args.json:
            print(json.dumps({"file": str(path), **(
                estimate.to_dict() if error is None else {"error": error})}))
        elif error is None:
            print(f"{path}: {estimate.describe()}")
        else:
            print(f"failed {path}: {in_flag_terms(error)}", file=sys.stderr)
    if failed:
        names = ", ".join(str(path) for path, _ in failed)
        raise BatchFailed(f"{len(failed)} of {len(results)} files failed: {names}")


def cmd_demo(args: argparse.Namespace) -> None:
    from .api import denoise, make_config
    from .core.device import select_device
    from .core.training import check_network_fits

    clean = clean_sample()
    noisy = noisy_sample(clean)
    config = make_config(noise="poisson-gaussian", gain=SAMPLE_GAIN, sigma=SAMPLE_READ_SIGMA,
                         max_seconds=None if args.steps else args.max_seconds,
                         max_steps=args.steps, device=args.device)
    out = args.output
    names = ("clean", "noisy", "denoised")
    weights = check_network_fits(config, select_device(config.device).type)
    check_location(out, 3 * clean.size * 4 + weights + 2**20, kind="folder", what="demo")
    for name in (*(f"{n}.tif" for n in names), "model.n2s"):
        check_location(out / name)
    start = time.perf_counter()
    model = _train_with_bar(noisy, config)
    result = denoise(noisy, model)
    seconds = time.perf_counter() - start
    for name, data in zip(names, (clean, noisy, result), strict=True):
        write_tiff(out / f"{name}.tif", data)
    model.save(out / "model.n2s")
    peak = float(clean.max())

    def psnr(x: np.ndarray) -> float:
        return float(10 * np.log10(peak**2 / np.mean((x.astype(np.float64) - clean) ** 2)))

    print(f"sample {noisy.shape}, Poisson-Gaussian noise (gain {SAMPLE_GAIN}, read sigma "
          f"{SAMPLE_READ_SIGMA}); trained {model.steps} steps, {seconds:.0f} s in all")
    print(f"PSNR noisy {psnr(noisy):.2f} dB -> denoised {psnr(result):.2f} dB; files in {out}/")


@functools.cache
def _flags() -> dict[str, tuple[str, bool]]:
    """Each option's parameter name (its dest) -> (its long flag, whether it is a switch
    with a --no- form), over every command."""
    flags: dict[str, tuple[str, bool]] = {}
    parsers = [build_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
                continue
            long = [o for o in action.option_strings if o.startswith("--")]
            if long and action.dest not in ("help", "output"):
                switch = isinstance(action, argparse.BooleanOptionalAction)
                if switch or action.dest not in flags:  # a --no- form wins
                    flags[action.dest] = (long[0], switch)
    return flags


def in_flag_terms(message: str) -> str:
    """A library message, worded in parameter names, in this command line's flags:
    ``axes=TZYX`` becomes ``--axes TZYX``, ``tta=False`` ``--no-tta``, "the max_steps
    parameter" ``--steps``; names that are not options stay as they are."""
    flags = _flags()

    def value(match: re.Match) -> str:
        name, given = match.group(1), match.group(2)
        if name not in flags:
            return match.group(0)
        flag, switch = flags[name]
        if switch and given in ("True", "False"):
            return flag if given == "True" else "--no-" + flag[2:]
        return f"{flag} {given}"

    def parameter(match: re.Match) -> str:
        name = match.group(1)
        return flags[name][0] if name in flags else match.group(0)

    message = re.sub(r"\b([a-z][a-z0-9_]*)=([\w.]+)", value, message)
    return re.sub(r"\bthe ([a-z][a-z0-9_]*) parameter\b", parameter, message)


COMMANDS = {"train": cmd_train, "denoise": cmd_denoise, "run": cmd_run, "demo": cmd_demo,
            "estimate": cmd_estimate, "gui": lambda args: run_gui(args.files),
            "export": run_export}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave SIGTERM alone
        previous = None
    try:
        COMMANDS[args.command](args)
    except Noise2ScoreError as exc:
        print(f"napari-noise2score: error: {in_flag_terms(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:
        print("napari-noise2score: error: out of memory", file=sys.stderr)
        return EXIT_USAGE
    except BatchFailed as exc:
        print(f"napari-noise2score: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Terminated:
        print("napari-noise2score: terminated; no partial output was written", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("napari-noise2score: interrupted; no partial output was written", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
