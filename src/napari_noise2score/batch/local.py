"""One job run here (also the task a dask worker runs for a whole file), and a batch of
jobs on local threads."""

from __future__ import annotations

import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from .. import pipeline
from ..core.errors import Noise2ScoreError
from ..pipeline import set_torch_threads
from .jobs import DONE, FAILED, FileResult, Job

__all__ = ["run_job", "run_local", "worker_name"]


def run_job(job: Job, model, options: dict[str, Any], progress=None, stop=None,
            threads: int | None = None) -> FileResult:
    """Denoise one file with ``pipeline.denoise_file``; any error becomes a failed result.
    ``threads`` sets this process's torch threads and leaves them so (for a dask worker)."""
    start = time.perf_counter()
    worker = worker_name()
    set_torch_threads(threads)
    try:
        pipeline.denoise_file(job.source, model, job.output, progress=progress, stop=stop,
                              **options)
    except Noise2ScoreError as exc:
        return FileResult(job, FAILED, time.perf_counter() - start, str(exc), worker, True)
    except Exception as exc:  # a bug or an unexpected library error: report, go on
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
        return FileResult(job, FAILED, time.perf_counter() - start,
                          f"{type(exc).__name__}: {exc}{where}", worker)
    return FileResult(job, DONE, time.perf_counter() - start, None, worker)


def worker_name() -> str:
    """This dask worker's address, or ``local:PID`` outside a worker."""
    try:
        from distributed import get_worker  # lazy: about a second to import, cluster only

        return get_worker().address
    except (ImportError, ValueError):
        return f"local:{os.getpid()}"


def run_local(jobs, model, options, record, workers, progress_for) -> None:
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
