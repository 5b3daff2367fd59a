"""``denoise_batch``: many files, resumable, per-file failures, here or on a cluster."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from ..core.errors import Noise2ScoreError
from ..io.chunked_writer import remove_stale_temporaries
from ..pipeline import check_threads, load_model, torch_threads
from .jobs import DISTRIBUTE, SKIPPED, BatchSummary, FileResult, Job, is_finished, plan_jobs
from .local import run_local

__all__ = ["denoise_batch"]


def denoise_batch(inputs: Sequence[str | os.PathLike] | Sequence[Job], model,
                  output: str | os.PathLike | None = None, *, client=None, workers: int = 1,
                  overwrite: bool = False, threads: int | None = None, distribute: str = "auto",
                  on_result: Callable[[FileResult], None] | None = None,
                  progress_for: Callable[[Job], Callable[[int, int], None] | None] | None = None,
                  **options) -> BatchSummary:
    """Denoise many files (files, folders or glob patterns; or ready Jobs, with
    ``output=None``) into ``output`` (a folder, or one file for one input).

    Finished outputs are skipped unless ``overwrite``; a failing file is recorded and the
    others go on; leftover temporary outputs of killed runs are removed first. ``client``
    (a ``distributed.Client`` or a scheduler address) spreads the work over the cluster's
    workers, the model sent to each once: one task per file or per tile of a large file
    (``distribute``, see ``DISTRIBUTE``); without it, ``workers`` local threads. ``threads``
    fixes torch's threads per process (bit-identical results for the same count; default:
    all cores here, the workers' own on a cluster). ``options`` go to ``denoise_file``
    (``pipeline.TILING_OPTIONS``). ``on_result`` gets each file's result as it ends;
    ``progress_for(job)`` may give a per-tile progress callback (not for one task per file
    on a cluster)."""
    start = time.perf_counter()
    if distribute not in DISTRIBUTE:
        raise Noise2ScoreError(f"distribute must be one of {', '.join(DISTRIBUTE)}, "
                               f"not {distribute!r}")
    check_threads(threads)
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
            from .cluster import run_distributed  # lazy: distributed, for clusters only

            run_distributed(client, todo, model, options, record, threads, distribute,
                            progress_for)
        else:
            with torch_threads(threads):
                run_local(todo, model, options, record, workers, progress_for)
    summary.seconds = time.perf_counter() - start
    return summary
