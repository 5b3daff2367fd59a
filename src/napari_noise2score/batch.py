"""Batch denoising of many files: inputs (files, folders, globs) to jobs, resume, per-file
failures, a summary; run locally on threads or spread over a dask.distributed cluster,
one task per file or, for a large file, one task per tile.

Each output is written to a temporary name and renamed when complete, so an existing
output is a finished one: a re-run skips it (resume) and removes the temporary files that
killed runs left (``io.chunked_writer.remove_stale_temporaries``).
"""

from __future__ import annotations

import glob
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .core.errors import Cancelled, Noise2ScoreError
from .io.files import READABLE, output_paths

DONE, SKIPPED, FAILED = "done", "skipped", "failed"
#: How files go to a cluster: "auto" (tiles of a large file when there are fewer files than
#: worker threads), "files" (one task per file), "tiles" (one task per tile of every file).
DISTRIBUTE = ("auto", "files", "tiles")
#: Tile tasks submitted ahead per worker thread when one file is spread over a cluster.
TASKS_PER_THREAD = 2
#: The ``denoise_file`` options a file spread tile by tile takes.
_TILING_OPTIONS = {"axes", "sigma", "gain", "shape", "tile", "overlap", "memory", "dtype",
                   "series"}
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
    #: The dask worker that ran the file (its address; for a file spread tile by tile, every
    #: worker that denoised a tile, comma-separated), or ``local:PID``.
    worker: str | None = None
    #: The error was about the input or the parameters (a Noise2ScoreError), not a crash.
    user_error: bool = False


@dataclass
class BatchSummary:
    """Every job's result, the batch's wall time and the leftover temporary files (of killed
    runs) that were removed before it."""

    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    cleaned: list[Path] = field(default_factory=list)

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
            "cleaned": [str(p) for p in self.cleaned],
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


def plan_jobs(inputs: Iterable[str | os.PathLike], output: str | os.PathLike,
              protect: Iterable[str | os.PathLike] = ()) -> list[Job]:
    """Jobs for the expanded inputs: ``output`` itself for one input named .tif/.tiff/.zarr,
    else OUTPUT/NAME.tif (names mirror the inputs'); collisions raise Noise2ScoreError, and
    an output that is an input or one of ``protect`` (the model file) OutputError."""
    sources = expand_inputs(inputs)
    targets = output_paths(sources, Path(output), [Path(p) for p in protect])
    return [Job(s, t) for s, t in zip(sources, targets, strict=True)]


def check_job_outputs(jobs: Iterable[Job]) -> None:
    """Refuse, before any work, an output location that cannot be written (see
    ``io.chunked_writer.check_output``); the size is checked again when each file starts."""
    from .io.chunked_writer import check_output

    for job in jobs:
        check_output(job.output, 0, [job.source])


def check_model_output(path: str | os.PathLike, config, inputs: Iterable[str | os.PathLike],
                       outputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse, before training, a model file that would replace an input or an image
    output, sits where a folder is or in a read-only folder, or has no room on its disk;
    and a network that cannot fit in memory (``core.training.check_network_fits``)."""
    from .core.device import select_device
    from .core.errors import OutputError
    from .core.training import check_network_fits
    from .io.outputs import check_location, same_file

    for output in outputs:
        if same_file(path, output):
            raise OutputError(f"the model file {path} and the denoised output are the same file")
    nbytes = check_network_fits(config, select_device(config.device).type)
    check_location(path, nbytes + 2**16, inputs, what="model file")


def is_finished(job: Job) -> bool:
    """Whether the job's output exists: outputs appear only complete (atomic rename)."""
    return job.output.exists()


def set_torch_threads(threads: int | None) -> None:
    """Set torch's intra-op threads of this process (None: leave them)."""
    import torch

    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run a block with ``threads`` torch threads (process-wide), then restore the count."""
    import torch

    if threads is not None and threads < 1:
        raise Noise2ScoreError(f"threads must be >= 1, not {threads}")
    before = torch.get_num_threads()
    set_torch_threads(threads)
    try:
        yield
    finally:
        set_torch_threads(before)


def run_job(job: Job, model, options: dict[str, Any], progress=None, stop=None,
            threads: int | None = None) -> FileResult:
    """Denoise one file with ``api.denoise_file``; any error becomes a failed result.

    ``threads`` sets this process's torch threads and leaves them so (on a dask worker,
    where tasks run side by side; the local path sets them around the whole batch).
    """
    from .api import denoise_file

    start = time.perf_counter()
    worker = _worker_name()
    set_torch_threads(threads)
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
    threads: int | None = None,
    distribute: str = "auto",
    on_result: Callable[[FileResult], None] | None = None,
    progress_for: Callable[[Job], Callable[[int, int], None] | None] | None = None,
    **options,
) -> BatchSummary:
    """Denoise many files into ``output`` (a folder, or one file for one input).

    ``inputs`` are files, folders or glob patterns (or ready Jobs, with ``output=None``).
    Finished outputs are skipped unless ``overwrite``; a failing file is recorded and the
    others go on; leftover temporary outputs of killed runs are removed first. ``client``
    (a ``distributed.Client`` or a scheduler address) spreads the work over the cluster's
    workers, the model sent to each worker once: one task per file, or one task per tile of
    a large file (``distribute``: auto, files or tiles; see ``DISTRIBUTE``); without it,
    ``workers`` local threads. ``threads`` fixes torch's threads per process (results are
    bit-identical for the same count; default: all cores locally, as the workers are set
    on a cluster). ``options`` go to ``denoise_file`` (axes, sigma, gain, shape, tile,
    overlap, memory). ``on_result`` is called with each file's result as it ends;
    ``progress_for(job)`` may give a per-tile progress callback (not for one task per file
    on a cluster).
    """
    from .api import load_model
    from .io.chunked_writer import remove_stale_temporaries

    start = time.perf_counter()
    if distribute not in DISTRIBUTE:
        raise Noise2ScoreError(f"distribute must be one of {', '.join(DISTRIBUTE)}, "
                               f"not {distribute!r}")
    if threads is not None and threads < 1:
        raise Noise2ScoreError(f"threads must be >= 1, not {threads}")
    if workers < 1:
        raise Noise2ScoreError(f"workers must be >= 1, not {workers}")
    if inputs and all(isinstance(j, Job) for j in inputs):
        jobs = list(inputs)
    else:
        if output is None:
            raise Noise2ScoreError("give an output folder (or file for one input)")
        jobs = plan_jobs(inputs, output)
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    summary = BatchSummary()
    for job in jobs:
        summary.cleaned.extend(remove_stale_temporaries(job.output))

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
            _run_distributed(client, todo, model, options, record, threads, distribute,
                             progress_for)
        else:
            with torch_threads(threads):
                _run_local(todo, model, options, record, workers, progress_for)
    summary.seconds = time.perf_counter() - start
    return summary


def _run_local(jobs, model, options, record, workers, progress_for) -> None:
    """Threads (``workers`` of them); Ctrl-C stops the running files cleanly (no output)."""
    stop_event = threading.Event()
    with ThreadPoolExecutor(max_workers=int(workers)) as pool:
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


@contextmanager
def connected(client) -> Iterator[Any]:
    """A ``distributed.Client``: ``client`` itself, or one connected to the scheduler
    address ``client`` for the block (then closed)."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise Noise2ScoreError("--scheduler needs dask.distributed: pip install distributed") \
            from None
    if not isinstance(client, str):
        yield client
        return
    try:
        own = Client(client, timeout="30s")
    except OSError as exc:
        raise Noise2ScoreError(f"cannot reach the dask scheduler {client}: {exc}") from None
    try:
        yield own
    finally:
        own.close()


def _cluster_threads(client) -> int:
    """Worker threads the cluster has now (0 while its workers are still starting)."""
    return sum(client.nthreads().values())


def _run_distributed(client, jobs, model, options, record, threads, distribute,
                     progress_for) -> None:
    """Files with few tiles as one task each, then each large file tile by tile; the model
    is scattered to every worker once."""
    with connected(client) as client:
        remote = client.scatter(model, broadcast=True, hash=False)
        spread = _files_to_spread(client, jobs, model, options, distribute)
        whole = [j for j in jobs if j not in spread]
        if whole:
            _run_file_tasks(client, whole, remote, options, record, threads)
        for job in spread:
            progress = progress_for(job) if progress_for else None
            record(_run_spread_job(client, job, model, remote, options, threads, progress))


def _files_to_spread(client, jobs: list[Job], model, options, distribute: str) -> list[Job]:
    """The jobs to run tile by tile: all with "tiles"; with "auto", those of more than one
    tile when there are fewer files than the cluster's threads (or a single file)."""
    if distribute == "files":
        return []
    if distribute == "tiles":
        return list(jobs)
    if len(jobs) > 1 and len(jobs) >= _cluster_threads(client):
        return []
    return [j for j in jobs if _tile_count(j.source, model, options) > 1]


def _tile_count(source: Path, model, options: dict[str, Any]) -> int:
    """Tiles the local path would cut ``source`` into; 0 when it cannot be opened (its
    error is then reported by the task that denoises it)."""
    try:
        return _tiler_for(source, model, options)[0].n_tiles
    except Exception:  # any failure here is the file's own, reported when it runs
        return 0


def _tiler_for(source: Path, model, options: dict[str, Any]):
    """``(TiledDenoiser, axes, noise, input dtype)`` for a file, exactly as
    ``api.denoise_file`` makes it."""
    from .core.tiling import TiledDenoiser
    from .io.lazy import open_lazy

    unknown = sorted(set(options) - _TILING_OPTIONS)
    if unknown:
        raise Noise2ScoreError(f"unknown denoising options: {', '.join(unknown)}")
    params = model.noise_params(sigma=options.get("sigma"), gain=options.get("gain"),
                                shape=options.get("shape"))
    data, axes = open_lazy(source, options.get("axes"), options.get("series"))
    tiler = TiledDenoiser(model, data.shape, axes, params, options.get("tile"),
                          options.get("overlap"), options.get("memory"))
    return tiler, axes, params, data.dtype


def _absolute(job: Job) -> Job:
    """The job with absolute paths, for workers whose working folder is not ours."""
    return Job(Path(os.path.abspath(job.source)), Path(os.path.abspath(job.output)))


def _run_file_tasks(client, jobs, remote, options, record, threads) -> None:
    """One task per file; results are recorded as they end, with the caller's Job."""
    from distributed import as_completed as dist_completed

    futures = {client.submit(run_job, _absolute(job), remote, options, None, None, threads,
                             pure=False, key=f"n2s-{job.source.name}-{i}-{time.time_ns()}"): job
               for i, job in enumerate(jobs)}
    for future in dist_completed(futures):
        job = futures[future]
        try:
            result = replace(future.result(), job=job)
        except Exception as exc:  # the worker died, or the task could not run there
            result = FileResult(job, FAILED, 0.0, f"{type(exc).__name__}: {exc}")
        record(result)


def _run_spread_job(client, job: Job, model, remote, options, threads, progress) -> FileResult:
    """One file tile by tile on the cluster (``denoise_file_on_cluster``) as a FileResult."""
    start = time.perf_counter()
    workers: set[str] = set()
    try:
        denoise_file_on_cluster(client, job.source, model, job.output, remote=remote,
                                threads=threads, progress=progress, workers=workers,
                                **options)
    except Noise2ScoreError as exc:
        return FileResult(job, FAILED, time.perf_counter() - start, str(exc),
                          _joined(workers), True)
    except Exception as exc:  # a worker died, or an unexpected library error: report, go on
        return FileResult(job, FAILED, time.perf_counter() - start,
                          f"{type(exc).__name__}: {exc}", _joined(workers))
    return FileResult(job, DONE, time.perf_counter() - start, None, _joined(workers))


def _joined(workers: set[str]) -> str | None:
    return ", ".join(sorted(workers)) or None


def denoise_file_on_cluster(
    client,
    path: str | os.PathLike,
    model,
    output: str | os.PathLike,
    *,
    remote=None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    workers: set[str] | None = None,
    **options,
) -> Path:
    """``api.denoise_file`` with each tile denoised on a dask worker: the same tiles (the
    tiling is decided here, as the local path would) and the same output, written here
    plane by plane through the atomic writer.

    At most ``TASKS_PER_THREAD`` tiles per worker thread are in flight, and only the plane
    being assembled is held here, so memory stays bounded whatever the file size.
    ``remote`` is the model already scattered to the workers (else it is scattered now);
    the workers read the input themselves (same path on every machine). The address of
    every worker that denoised a tile is added to ``workers``.
    """
    from .core.stack import result_dtype
    from .io.calibration import read_calibration
    from .io.chunked_writer import check_output, write_planes

    path, output = Path(path), Path(output)
    if threads is not None and threads < 1:
        raise Noise2ScoreError(f"threads must be >= 1, not {threads}")
    tiler, axes, params, in_dtype = _tiler_for(path, model, options)
    out_dtype = result_dtype(options.get("dtype", "float32"), in_dtype)
    series = options.get("series")
    layout = tiler.layout
    check_output(output, int(np.prod(layout.shape)) * out_dtype.itemsize, [path])
    stat = path.stat()
    spec = TileSpec(os.path.abspath(path), (stat.st_mtime_ns, stat.st_size), axes, params,
                    tiler.tile, tiler.overlap, threads, series)
    with connected(client) as client:
        if remote is None:
            remote = client.scatter(model, broadcast=True, hash=False)
        planes = _cluster_planes(client, remote, tiler, spec, progress, stop,
                                 set() if workers is None else workers)
        return write_planes(output, planes, layout.stack_shape, layout.plane_shape,
                            layout.planes_axes, out_dtype, read_calibration(path, series))


@dataclass(frozen=True)
class TileSpec:
    """What a worker needs, besides the model, to cut a file into the client's tiles
    (``version``: the input's mtime and size, so a changed file is opened afresh)."""

    path: str
    version: tuple[int, int]
    axes: str
    noise: Any
    tile: int
    overlap: int
    threads: int | None
    series: int | None = None


def _cluster_planes(client, remote, tiler, spec: TileSpec, progress, stop,
                    workers: set[str]) -> Iterator[np.ndarray]:
    """Yield the denoised planes in stack C order, their tiles computed on the workers; a
    bounded window of tile tasks runs ahead of the plane being assembled."""
    h, w = tiler.layout.plane_shape
    tiles = [(s, win) for s in tiler.layout.plane_indices() for win in tiler.grid]
    total, per_plane = len(tiles), len(tiler.grid)
    stamp = time.time_ns()
    pending: deque = deque()
    submitted = 0
    plane = np.empty((h, w), dtype=np.float32)
    try:
        for done in range(total):
            if done % per_plane == 0:  # a plane starts: fit the window to the cluster now
                ahead = max(2, TASKS_PER_THREAD * _cluster_threads(client))
            while submitted < total and len(pending) < ahead:
                _poll(stop)
                stack_index, window = tiles[submitted]
                pending.append(client.submit(_tile_task, remote, spec, stack_index, window,
                                             pure=False, key=f"n2s-tile-{stamp}-{submitted}"))
                submitted += 1
            tile, worker = _result(pending.popleft(), stop)
            workers.add(worker)
            y0, y1, x0, x1 = tiles[done][1]
            plane[y0:y1, x0:x1] = tile
            if progress is not None:
                progress(done + 1, total)
            if (done + 1) % per_plane == 0:
                yield plane
                plane = np.empty((h, w), dtype=np.float32)
    finally:
        for future in pending:
            future.cancel()


def _poll(stop) -> None:
    if stop is not None and stop():
        raise Cancelled("denoising stopped")


def _result(future, stop, poll_seconds: float = 0.2):
    """A future's result, polling ``stop`` while waiting."""
    from distributed import wait

    while stop is not None and not future.done():
        _poll(stop)
        wait(future, timeout=poll_seconds, return_when="FIRST_COMPLETED")
    return future.result()


_WORKER_TILERS: dict[tuple, tuple] = {}
_WORKER_LOCK = threading.Lock()
#: Files a worker keeps open (with their tiling) for the tile tasks that follow.
WORKER_OPEN_FILES = 4


def _tile_task(model, spec: TileSpec, stack_index: tuple[int, ...], window) -> tuple:
    """On a worker: denoise one tile of one plane; ``(tile, this worker's address)``."""
    set_torch_threads(spec.threads)
    tiler, source = _worker_tiler(model, spec)
    return tiler.denoise_tile(source, stack_index, window), _worker_name()


def _worker_tiler(model, spec: TileSpec) -> tuple:
    """The file opened lazily and its TiledDenoiser, kept for this worker's next tiles."""
    from .core.tiling import TiledDenoiser
    from .io.lazy import open_lazy

    key = (id(model), spec)
    with _WORKER_LOCK:
        if key not in _WORKER_TILERS:
            source, axes = open_lazy(spec.path, spec.axes, spec.series)
            tiler = TiledDenoiser(model, source.shape, axes, spec.noise, spec.tile,
                                  spec.overlap)
            while len(_WORKER_TILERS) >= WORKER_OPEN_FILES:
                _WORKER_TILERS.pop(next(iter(_WORKER_TILERS)))
            _WORKER_TILERS[key] = (tiler, source)
        return _WORKER_TILERS[key]
