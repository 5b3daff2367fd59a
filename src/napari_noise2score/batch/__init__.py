"""Batch denoising of many files: inputs (files, folders, globs) to jobs, resume, per-file
failures, a summary; run locally on threads or spread over a dask.distributed cluster,
one task per file or, for a large file, one task per tile.

``jobs``: inputs to jobs, results, the summary (no torch: the command line imports it);
``local``: one job here (``run_job``), a batch on threads; ``cluster``: a batch, or one
large file tile by tile, on dask workers; ``run``: ``denoise_batch``, which picks the runner.

Outputs are written atomically, so an existing output is a finished one: a re-run skips it
(resume) and removes the temporary files that killed runs left
(``io.chunked_writer.remove_stale_temporaries``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .jobs import (
    DISTRIBUTE,
    DONE,
    FAILED,
    SKIPPED,
    BatchSummary,
    FileResult,
    Job,
    check_job_outputs,
    expand_inputs,
    is_finished,
    plan_jobs,
)

if TYPE_CHECKING:
    from ..pipeline import check_model_output, set_torch_threads, torch_threads
    from .cluster import (
        TASKS_PER_THREAD,
        WORKER_OPEN_FILES,
        TileSpec,
        connected,
        denoise_file_on_cluster,
    )
    from .local import run_job
    from .run import denoise_batch

__all__ = ["DISTRIBUTE", "DONE", "FAILED", "SKIPPED", "TASKS_PER_THREAD", "WORKER_OPEN_FILES",
           "BatchSummary", "FileResult", "Job", "TileSpec", "check_job_outputs",
           "check_model_output", "connected", "denoise_batch", "denoise_file_on_cluster",
           "expand_inputs", "is_finished", "plan_jobs", "run_job", "set_torch_threads",
           "torch_threads"]

_PIPELINE = ("check_model_output", "set_torch_threads", "torch_threads")


def __getattr__(name: str):
    """The torch-backed runners on first use (the command line starts without torch;
    distributed is imported only for the cluster's names)."""
    if name in _PIPELINE:
        from .. import pipeline

        return getattr(pipeline, name)
    if name in ("run_job", "denoise_batch"):
        from . import local, run

        return getattr(local if name == "run_job" else run, name)
    if name in __all__:
        from . import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
