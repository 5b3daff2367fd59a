"""A batch over a dask.distributed cluster: one task per file, or one task per tile of a
large file (the tiles decided here, as the local path would, and the output written here
plane by plane). Imported only when a cluster is used (distributed is slow to import)."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client, wait
from distributed import as_completed as dist_completed

from ..core.errors import Cancelled, Noise2ScoreError
from ..core.inference import TiledDenoiser
from ..io.calibration import read_calibration
from ..io.chunked_writer import write_planes
from ..io.lazy import open_lazy
from ..pipeline import check_threads, plan_options, set_torch_threads
from .jobs import DONE, FAILED, FileResult, Job, absolute
from .local import run_job, worker_name

__all__ = ["TASKS_PER_THREAD", "WORKER_OPEN_FILES", "TileSpec", "connected",
           "denoise_file_on_cluster", "run_distributed"]

#: Tile tasks submitted ahead per worker thread when one file is spread over a cluster.
TASKS_PER_THREAD = 2
#: Files a worker keeps open (with their tiling) for the tile tasks that follow.
WORKER_OPEN_FILES = 4


@contextmanager
def connected(client) -> Iterator[Any]:
    """A ``distributed.Client``: ``client`` itself, or one connected to the scheduler
    address ``client`` for the block (then closed)."""
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


def run_distributed(client, jobs, model, options, record, threads, distribute,
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
        plan = plan_options(source, model, bind=False, **options)
    except Exception:  # any failure here is the file's own, reported when it runs
        return 0
    plan.close()
    return plan.tiler.n_tiles


def _run_file_tasks(client, jobs, remote, options, record, threads) -> None:
    """One task per file; results are recorded as they end, with the caller's Job."""
    futures = {client.submit(run_job, absolute(job), remote, options, None, None, threads,
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


def denoise_file_on_cluster(client, path: str | os.PathLike, model, output: str | os.PathLike,
                            *, remote=None, threads: int | None = None,
                            progress: Callable[[int, int], None] | None = None,
                            stop: Callable[[], bool] | None = None,
                            workers: set[str] | None = None, **options) -> Path:
    """``api.denoise_file`` with each tile denoised on a dask worker: the same tiles (decided
    here by ``pipeline.plan_file``) and output, written here plane by plane; at most
    ``TASKS_PER_THREAD`` tiles per worker thread in flight, so memory stays bounded.
    ``remote``: the model already scattered to the workers (else scattered now); the workers
    read the input themselves (same path on every machine) and their addresses are added
    to ``workers``."""
    path, output = Path(path), Path(output)
    check_threads(threads)
    plan = plan_options(path, model, output, bind=False, **options)
    plan.close()  # the workers read the tiles; here only the layout is needed
    tiler, series = plan.tiler, options.get("series")
    layout = tiler.layout
    stat = path.stat()
    spec = TileSpec(os.path.abspath(path), (stat.st_mtime_ns, stat.st_size), plan.axes,
                    plan.noise, tiler.tile, tiler.overlap, threads, series)
    with connected(client) as client:
        if remote is None:
            remote = client.scatter(model, broadcast=True, hash=False)
        planes = _cluster_planes(client, remote, tiler, spec, progress, stop,
                                 set() if workers is None else workers)
        return write_planes(output, planes, layout.stack_shape, layout.plane_shape,
                            layout.planes_axes, plan.dtype, read_calibration(path, series))


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
    while stop is not None and not future.done():
        _poll(stop)
        wait(future, timeout=poll_seconds, return_when="FIRST_COMPLETED")
    return future.result()


_WORKER_TILERS: dict[tuple, tuple] = {}
_WORKER_LOCK = threading.Lock()


def _tile_task(model, spec: TileSpec, stack_index: tuple[int, ...], window) -> tuple:
    """On a worker: denoise one tile of one plane; ``(tile, this worker's address)``."""
    set_torch_threads(spec.threads)
    tiler, source = _worker_tiler(model, spec)
    return tiler.denoise_tile(source, stack_index, window), worker_name()


def _worker_tiler(model, spec: TileSpec) -> tuple:
    """The file opened lazily and its TiledDenoiser, kept for this worker's next tiles."""
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
