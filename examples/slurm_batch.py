"""Denoise a folder on a SLURM cluster: dask-jobqueue starts the dask workers as batch jobs,
``denoise_batch`` spreads the files (or the tiles of a large file) over them.

Needs ``pip install "napari-noise2score[cluster]"`` in an environment every node sees, and
paths on a file system every node shares::

    python examples/slurm_batch.py '/shared/raw/**/*.tif' --model /shared/cells.n2s \\
        -o /shared/denoised --jobs 10 --cores 8 --memory 16GB --partition cpu
    python examples/slurm_batch.py ... --dry-run   # print the job script and the plan only

Re-running the same command after a job's time limit resumes the batch: finished outputs
are skipped, leftover temporary files of killed workers removed.
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", help="files, folders or glob patterns")
    p.add_argument("--model", required=True, help="a model file saved by the plugin")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--jobs", type=int, default=4, help="SLURM jobs, one worker each")
    p.add_argument("--cores", type=int, default=8, help="cores per job (tasks run at once)")
    p.add_argument("--memory", default="16GB", help="memory per job")
    p.add_argument("--walltime", default="04:00:00")
    p.add_argument("--partition", help="SLURM partition (default: the cluster's)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the job script and the files to do; submit nothing")
    return p.parse_args(argv)


def make_cluster(args: argparse.Namespace):
    """A SLURMCluster of one worker process per job, each running ``--cores`` tasks at once
    (one torch thread each, as dask's nanny sets)."""
    from dask_jobqueue import SLURMCluster

    extra = [f"--partition={args.partition}"] if args.partition else []
    return SLURMCluster(cores=args.cores, processes=1, memory=args.memory,
                        walltime=args.walltime, job_extra_directives=extra,
                        scheduler_options={"dashboard_address": None})


def main(argv: list[str] | None = None) -> int:
    from distributed import Client

    from napari_noise2score.batch import denoise_batch, is_finished, plan_jobs

    args = parse_args(argv)
    jobs = plan_jobs(args.inputs, args.output)
    with make_cluster(args) as cluster:
        if args.dry_run:
            print(cluster.job_script())
            todo = sum(not is_finished(j) for j in jobs)
            print(f"dry run: {args.jobs} jobs would denoise {todo} of {len(jobs)} files "
                  f"into {args.output}")
            return 0
        cluster.scale(jobs=args.jobs)
        with Client(cluster) as client:
            summary = denoise_batch(jobs, args.model, client=client,
                                    on_result=lambda r: print(r.status, r.job.output))
    print(summary.line())
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
