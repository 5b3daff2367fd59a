"""Scale-out on dask.distributed: one file's tiles spread over a LocalCluster of worker
processes, the command line against a running scheduler, the bounded window of tile tasks,
and the dask-jobqueue recipe's dry run."""

import os
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
import tifffile

from helpers import ROOT, SRC, headless_env, noisy_image, write_images
from napari_noise2score import batch as batch_module
from napari_noise2score.api import denoise_file, load_model
from napari_noise2score.batch import denoise_batch
from napari_noise2score.core.errors import Cancelled

STACK_SHAPE = (4, 150, 140)  # TYX; with tile 64: 3 x 3 tiles per plane, 36 in all


def write_stack(path: Path) -> Path:
    stack = np.stack([noisy_image(10 + i, 150)[:, :140] for i in range(STACK_SHAPE[0])])
    tifffile.imwrite(path, stack, photometric="minisblack", metadata={"axes": "TYX"})
    return path


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes with one thread each, importing this checkout's plugin."""
    distributed = pytest.importorskip("distributed")
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(SRC), before or ""])
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as local_cluster:
            yield local_cluster
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = before


@pytest.mark.cluster
def test_one_stack_spread_over_two_workers_equals_the_local_result(tmp_path, trained_model_file,
                                                                   cluster):
    """Both paths use 1 torch thread (``threads=1``): oneDNN sums convolutions in another
    order with 1 thread than with several, so only the same count is bit-identical."""
    import distributed

    source = write_stack(tmp_path / "stack.tif")
    local = tifffile.imread(denoise_file(source, trained_model_file, tmp_path / "local.tif",
                                         tile=64, threads=1))
    with distributed.Client(cluster) as client, distributed.get_task_stream(client) as stream:
        summary = denoise_batch([source], trained_model_file, tmp_path / "cluster.tif",
                                client=client, threads=1, tile=64)
        api_out = denoise_file(source, trained_model_file, tmp_path / "api.tif", tile=64,
                               threads=1, client=client)
    assert [r.status for r in summary.results] == ["done"]
    tile_tasks = [t for t in stream.data if "n2s-tile" in str(t["key"])]
    assert len(tile_tasks) == 2 * 36  # every tile of the stack was a task, twice
    ran_on = {t["worker"] for t in tile_tasks}
    assert len(ran_on) == 2 and set(summary.results[0].worker.split(", ")) == ran_on
    assert local.shape == STACK_SHAPE and local.dtype == np.float32
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "cluster.tif"), local)
    np.testing.assert_array_equal(tifffile.imread(api_out), local)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "api.tif", "cluster.tif", "local.tif", "stack.tif"]  # no temporary file left


@pytest.mark.cluster
def test_command_line_with_a_scheduler_address(tmp_path, trained_model_file, cluster):
    """The real CLI in a subprocess, connecting to the running LocalCluster: a folder batch
    (one task per file), then one stack (one task per tile); same pixels as the local path."""
    write_images(tmp_path / "raw", 3)
    write_stack(tmp_path / "stack.tif")
    address = cluster.scheduler_address
    common = ["--model", str(trained_model_file), "--scheduler", address, "--threads", "1"]
    cli = [sys.executable, "-m", "napari_noise2score", "denoise"]
    folder = subprocess.run([*cli, str(tmp_path / "raw"), "-o", str(tmp_path / "out"),
                             *common], env=headless_env(), capture_output=True, text=True,
                            timeout=180)
    assert folder.returncode == 0, folder.stderr
    assert "done 3, skipped 0, failed 0" in folder.stdout
    stack = subprocess.run([*cli, str(tmp_path / "stack.tif"), "-o",
                            str(tmp_path / "stack_out.tif"), "--tile", "64", *common],
                           env=headless_env(), capture_output=True, text=True, timeout=180)
    assert stack.returncode == 0, stack.stderr
    assert "done 1, skipped 0, failed 0" in stack.stdout

    local = denoise_batch([tmp_path / "raw"], trained_model_file, tmp_path / "local", threads=1)
    assert len(local.done) == 3
    for r in local.done:
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / r.job.output.name),
                                      tifffile.imread(r.job.output))
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "stack_out.tif"),
        tifffile.imread(denoise_file(tmp_path / "stack.tif", trained_model_file,
                                     tmp_path / "stack_local.tif", tile=64, threads=1)))


class InlineClient:
    """Runs each submitted task at once in this process; records how many were in flight
    (submitted, not yet collected) at most."""

    def __init__(self, threads: int) -> None:
        self.threads, self.in_flight, self.most = threads, 0, 0

    def nthreads(self) -> dict[str, int]:
        return {"tcp://inline:1": self.threads}

    def submit(self, fn, *args, pure=False, key=None) -> Future:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        future: Future = Future()
        future.set_result(fn(*args))
        client = self

        class Collected(Future):
            def result(self, timeout=None):
                client.in_flight -= 1
                return future.result()

        done = Collected()
        done.set_result(None)
        return done


def test_tile_tasks_in_flight_stay_within_the_window(tmp_path, trained_model_file):
    source = write_stack(tmp_path / "stack.tif")
    model = load_model(trained_model_file)
    client = InlineClient(threads=3)
    ticks = []
    out = batch_module.denoise_file_on_cluster(
        client, source, model, tmp_path / "out.tif", remote=model, tile=64, threads=1,
        progress=lambda done, total: ticks.append((done, total)))
    assert client.most == batch_module.TASKS_PER_THREAD * 3 and client.in_flight == 0
    assert ticks[-1] == (36, 36) and len(ticks) == 36
    np.testing.assert_array_equal(
        tifffile.imread(out),
        tifffile.imread(denoise_file(source, model, tmp_path / "local.tif", tile=64,
                                     threads=1)))

    calls = []

    def stop_after_five() -> bool:
        calls.append(1)
        return len(calls) > 5

    with pytest.raises(Cancelled):
        batch_module.denoise_file_on_cluster(client, source, model, tmp_path / "stopped.tif",
                                             remote=model, tile=64, stop=stop_after_five)
    assert not any(p.name.startswith((".stopped", "stopped")) for p in tmp_path.iterdir())


def test_slurm_recipe_renders_its_job_script_without_submitting(tmp_path, trained_model_file):
    pytest.importorskip("dask_jobqueue")
    write_images(tmp_path / "raw", 2)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "slurm_batch.py"), str(tmp_path / "raw"),
         "--model", str(trained_model_file), "-o", str(tmp_path / "out"), "--jobs", "3",
         "--cores", "4", "--memory", "8GB", "--partition", "gpu", "--dry-run"],
        env=headless_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --cpus-per-task=4" in proc.stdout
    assert "#SBATCH --partition=gpu" in proc.stdout
    assert "dask_worker" in proc.stdout or "dask worker" in proc.stdout
    assert "dry run: 3 jobs would denoise 2 of 2 files" in proc.stdout
    assert not (tmp_path / "out").exists()
