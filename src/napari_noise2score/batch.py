"""Batch denoising of many files: inputs (files, folders, globs) to jobs, resume, per-file
failures, a summary; run locally on threads or spread over a dask.distributed cluster.

Each output is written by ``api.denoise_file`` to a temporary name and renamed when
complete, so an existing output is a finished one: a re-run skips it (resume).
"""

from __future__ import annotations

import glob
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.errors import Noise2ScoreError
from .io.files import READABLE, output_paths

DONE, SKIPPED, FAILED = "done", "skipped", "failed"
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Job:
    """One file to denoise and where its result goes."""

    source: Path
    output: Path


@dataclass(frozen=True)
class FileResult:
    """What happened to one job: ``status`` is done, skipped or failed (with ``error``)."""

    job: Job
    status: str
    seconds: float = 0.0
    error: str | None = None
    worker: str | None = None
    #: The error was about the input or the parameters (a Noise2ScoreError), not a crash.
    user_error: bool = False


@dataclass
class BatchSummary:
    """Every job's result and the batch's wall time."""

    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def _with(self, status: str) -> list[FileResult]:
        return [r for r in self.results if r.status == status]

    @property
    def done(self) -> list[FileResult]:
        return self._with(DONE)

    @property
    def skipped(self) -> list[FileResult]:
        return self._with(SKIPPED)

    @property
    def failed(self) -> list[FileResult]:
        return self._with(FAILED)

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def line(self) -> str:
        """E.g. ``done 18, skipped 1, failed 1 in 42.0 s``."""
        return (f"done {len(self.done)}, skipped {len(self.skipped)}, "
                f"failed {len(self.failed)} in {self.seconds:.1f} s")

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": [str(r.job.output) for r in self.done],
            "skipped": [str(r.job.output) for r in self.skipped],
            "failed": {str(r.job.source): r.error for r in self.failed},
            "seconds": self.seconds,
        }


def _is_image(path: Path) -> bool:
    from .io.lazy import is_zarr

    if path.name.startswith("."):  # hidden files and our own temporary outputs
        return False
    return is_zarr(path) or (path.is_file() and path.suffix.lower() in READABLE)


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files, folders (their images: TIFF, PNG/JPEG, .npy, zarr stores; not recursive) and
    glob patterns (``**`` recurses) as a sorted-per-entry, duplicate-free list of paths.

    A pattern or folder that matches no image raises Noise2ScoreError; a plain file is kept
    as given (a missing or unreadable one fails later, as that file's error).
    """
    from .io.lazy import is_zarr

    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        text = str(item)
        if not path.exists() and _GLOB_CHARS & set(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            paths = [p for p in matches if _is_image(p)]
            if not paths:
                raise Noise2ScoreError(f"no image matches {text}")
        elif path.is_dir() and not is_zarr(path):
            paths = sorted(p for p in path.iterdir() if _is_image(p))
            if not paths:
                raise Noise2ScoreError(f"no image (TIFF, PNG, JPEG, .npy, zarr) in {path}")
        else:
            paths = [path]
        found.extend(paths)
    seen: set[Path] = set()
    unique = []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    if not unique:
        raise Noise2ScoreError("no input given")
    return unique


def plan_jobs(inputs: Iterable[str | os.PathLike], output: str | os.PathLike) -> list[Job]:
    """Jobs for the expanded inputs: ``output`` itself for one input named .tif/.tiff/.zarr,
    else OUTPUT/NAME.tif (names mirror the inputs'); collisions raise Noise2ScoreError."""
    sources = expand_inputs(inputs)
    targets = output_paths(sources, Path(output))
    return [Job(s, t) for s, t in zip(sources, targets, strict=True)]


def is_finished(job: Job) -> bool:
    """Whether the job's output exists: outputs appear only complete (atomic rename)."""
    return job.output.exists()


def run_job(job: Job, model, options: dict[str, Any], progress=None, stop=None) -> FileResult:
    """Denoise one file with ``api.denoise_file``; any error becomes a failed result."""
    from .api import denoise_file

    start = time.perf_counter()
    worker = _worker_name()
    try:
        denoise_file(job.source, model, job.output, progress=progress, stop=stop, **options)
    except Noise2ScoreError as exc:
        return FileResult(job, FAILED, time.perf_counter() - start, str(exc), worker, True)
    except Exception as exc:  # a bug or an unexpected library error: report, go on
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
        return FileResult(job, FAILED, time.perf_counter() - start,
                          f"{type(exc).__name__}: {exc}{where}", worker)
    return FileResult(job, DONE, time.perf_counter() - start, None, worker)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"local:{os.getpid()}"


def denoise_batch(
    inputs: Sequence[str | os.PathLike] | Sequence[Job],
    model,
    output: str | os.PathLike | None = None,
    *,
    client=None,
    workers: int = 1,
    overwrite: bool = False,
    on_result: Callable[[FileResult], None] | None = None,
    progress_for: Callable[[Job], Callable[[int, int], None] | None] | None = None,
    **options,
) -> BatchSummary:
    """Denoise many files into ``output`` (a folder, or one file for one input).

    ``inputs`` are files, folders or glob patterns (or ready Jobs, with ``output=None``).
    Finished outputs are skipped unless ``overwrite``; a failing file is recorded and the
    others go on. ``client`` (a ``distributed.Client`` or a scheduler address) spreads
    the files over the cluster's workers, the model sent to each worker once; without it,
    ``workers`` local threads. ``options`` go to ``denoise_file`` (axes, sigma, gain, shape,
    tile, overlap, memory). ``on_result`` is called with each file's result as it ends;
    ``progress_for(job)`` may give a per-tile progress callback (local path only).
    """
    from .api import load_model

    start = time.perf_counter()
    if inputs and all(isinstance(j, Job) for j in inputs):
        jobs = list(inputs)
    else:
        if output is None:
            raise Noise2ScoreError("give an output folder (or file for one input)")
        jobs = plan_jobs(inputs, output)
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    summary = BatchSummary()

    def record(result: FileResult) -> None:
        summary.results.append(result)
        if on_result is not None:
            on_result(result)

    todo = []
    for job in jobs:
        if not overwrite and is_finished(job):
            record(FileResult(job, SKIPPED))
        else:
            todo.append(job)
    if todo:
        if client is not None:
            _run_distributed(client, todo, model, options, record)
        else:
            _run_local(todo, model, options, record, workers, progress_for)
    summary.seconds = time.perf_counter() - start
    return summary


def _run_local(jobs, model, options, record, workers, progress_for) -> None:
    """Threads (``workers`` of them); Ctrl-C stops the running files cleanly (no output)."""
    stop_event = threading.Event()
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        futures = [pool.submit(run_job, job, model, options,
                               progress_for(job) if progress_for else None, stop_event.is_set)
                   for job in jobs]
        try:
            for future in as_completed(futures):
                record(future.result())
        except BaseException:
            stop_event.set()
            for f in futures:
                f.cancel()
            raise


def _run_distributed(client, jobs, model, options, record) -> None:
    """One task per file on the cluster; the model is scattered to every worker once."""
    try:
        from distributed import Client
        from distributed import as_completed as dist_completed
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise Noise2ScoreError("--scheduler needs dask.distributed: pip install distributed") \
            from None
    own = isinstance(client, str)
    if own:
        try:
            client = Client(client, timeout="30s")
        except OSError as exc:
            raise Noise2ScoreError(f"cannot reach the dask scheduler {client}: {exc}") from None
    try:
        remote = client.scatter(model, broadcast=True, hash=False)
        futures = {client.submit(run_job, job, remote, options, pure=False,
                                 key=f"n2s-{job.source.name}-{i}-{time.time_ns()}"): job
                   for i, job in enumerate(jobs)}
        for future in dist_completed(futures):
            job = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # the worker died, or the task could not run there
                result = FileResult(job, FAILED, 0.0, f"{type(exc).__name__}: {exc}")
            record(result)
    finally:
        if own:
            client.close()
