"""Batch jobs: inputs (files, folders, globs) to jobs and their outputs, what happened to
each job, the batch's summary. Light: no torch, so the command line starts fast."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import Noise2ScoreError
from ..io.chunked_writer import check_output
from ..io.files import READABLE, output_paths
from ..io.lazy import is_zarr

DONE, SKIPPED, FAILED = "done", "skipped", "failed"
#: How files go to a cluster: "auto" (tiles of a large file when there are fewer files than
#: worker threads), "files" (one task per file), "tiles" (one task per tile of every file).
DISTRIBUTE = ("auto", "files", "tiles")
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
        return {"done": [str(r.job.output) for r in self.done],
                "skipped": [str(r.job.output) for r in self.skipped],
                "failed": {str(r.job.source): r.error for r in self.failed},
                "seconds": self.seconds, "cleaned": [str(p) for p in self.cleaned]}


def _is_image(path: Path) -> bool:
    if path.name.startswith("."):  # hidden files and our own temporary outputs
        return False
    return is_zarr(path) or (path.is_file() and path.suffix.lower() in READABLE)


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files, folders (their images: TIFF, PNG/JPEG, .npy, zarr stores; not recursive) and
    glob patterns (``**`` recurses) as a sorted-per-entry, duplicate-free list of paths. A
    pattern or folder that matches no image raises Noise2ScoreError; a plain file is kept
    as given (a missing or unreadable one fails later, as that file's error)."""
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
    unique: dict[Path, Path] = {}  # the first spelling of each file
    for p in found:
        unique.setdefault(p.resolve(), p)
    if not unique:
        raise Noise2ScoreError("no input given")
    return list(unique.values())


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
    for job in jobs:
        check_output(job.output, 0, [job.source])


def is_finished(job: Job) -> bool:
    """Whether the job's output exists: outputs appear only complete (atomic rename)."""
    return job.output.exists()


def absolute(job: Job) -> Job:
    """The job with absolute paths, for workers whose working folder is not ours."""
    return Job(Path(os.path.abspath(job.source)), Path(os.path.abspath(job.output)))
