"""Headless batches: inputs to jobs, failures isolated, resume after a kill, npe2 commands with
no display, and a dask LocalCluster giving the same results as the local path."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from helpers import ROOT, SRC, headless_env, write_images
from napari_noise2score.batch import Job, denoise_batch, expand_inputs, plan_jobs
from napari_noise2score.cli import main
from napari_noise2score.core.errors import Noise2ScoreError


def test_inputs_expand_from_files_folders_and_globs(tmp_path):
    import zarr

    paths = write_images(tmp_path / "raw", 3)
    (tmp_path / "raw" / "notes.txt").write_text("not an image")
    (tmp_path / "raw" / ".img09.tif.abc.tmp").write_bytes(b"partial")  # a dead run's temp
    store = zarr.create_array(str(tmp_path / "raw" / "vol.zarr"), shape=(2, 32, 32),
                              dtype="uint8")
    store[:] = 1
    assert expand_inputs([tmp_path / "raw"]) == [*paths, tmp_path / "raw" / "vol.zarr"]
    assert expand_inputs([str(tmp_path / "raw" / "img0[02].tif"), paths[0]]) == [
        paths[0], paths[2]]
    assert expand_inputs([str(tmp_path / "**" / "*.tif")]) == paths
    jobs = plan_jobs([tmp_path / "raw"], tmp_path / "out")
    assert [j.output.name for j in jobs] == ["img00.tif", "img01.tif", "img02.tif", "vol.tif"]
    with pytest.raises(Noise2ScoreError, match="no image matches"):
        expand_inputs([str(tmp_path / "*.png")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(Noise2ScoreError, match="no image"):
        expand_inputs([tmp_path / "empty"])


def test_a_broken_file_is_reported_and_the_others_finish(tmp_path, trained_model_file, capsys):
    paths = write_images(tmp_path / "raw", 4)
    broken = tmp_path / "raw" / "img01b.tif"  # sorts into the middle
    broken.write_bytes(b"II*\x00 this is not a TIFF")
    seen = []
    summary = denoise_batch([tmp_path / "raw"], trained_model_file, tmp_path / "out",
                            on_result=seen.append)
    assert len(summary.done) == 4 and len(summary.failed) == 1 and not summary.ok
    assert summary.failed[0].job.source == broken and "cannot read" in summary.failed[0].error
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]
    assert len(seen) == 5 and summary.line().startswith("done 4, skipped 0, failed 1 in ")

    # the command line: same batch, the finished files skipped, exit status 1
    code = main(["denoise", str(tmp_path / "raw"), "--model", str(trained_model_file),
                 "-o", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    assert "done 0, skipped 4, failed 1 in" in captured.out
    assert f"failed {broken}" in captured.err and "1 of 5 files failed" in captured.err


def test_interrupted_batch_resumes_without_redoing_finished_files(tmp_path, trained_model_file):
    write_images(tmp_path / "raw", 5)
    calls = []

    def interrupt_after_two(result) -> None:
        calls.append(result)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        denoise_batch([tmp_path / "raw"], trained_model_file, tmp_path / "out",
                      on_result=interrupt_after_two)
    finished = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    assert 2 <= len(finished) < 5  # the file running at the interrupt may have ended
    assert all(p.suffix == ".tif" for p in finished)  # no temporary file left
    summary = denoise_batch([tmp_path / "raw"], trained_model_file, tmp_path / "out")
    n = len(finished)
    assert (len(summary.done), len(summary.skipped), len(summary.failed)) == (5 - n, n, 0)
    assert {r.job.output for r in summary.skipped} == set(finished)
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    assert len(list((tmp_path / "out").iterdir())) == 5


def test_killed_command_line_resumes(tmp_path, trained_model_file):
    """SIGKILL the CLI mid-batch (no chance to clean up), then re-run it."""
    write_images(tmp_path / "raw", 12, size=192)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "napari_noise2score", "denoise", str(tmp_path / "raw"),
           "--model", str(trained_model_file), "-o", str(out), "--tile", "64"]
    proc = subprocess.Popen(cmd, env=headless_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and any(p.suffix == ".tif" for p in out.iterdir()):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    finished = {p: p.stat().st_mtime_ns for p in out.glob("*.tif")}
    assert 1 <= len(finished) < 12, "the batch ended before it could be killed"
    for p in finished:  # what has its final name is complete
        assert tifffile.imread(p).shape == (192, 192)
    leftover = list(out.glob(".*.tmp"))  # the file being written when killed, if any
    rerun = subprocess.run(cmd, env=headless_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert (f"removed {len(leftover)} temporary files" in rerun.stderr) == bool(leftover)
    assert f"done {12 - len(finished)}, skipped {len(finished)}, failed 0" in rerun.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    assert sorted(p.name for p in out.glob("*.tif")) == [f"img{i:02d}.tif" for i in range(12)]
    assert not list(out.glob(".*.tmp"))  # the killed run's temporary file was removed


def test_npe2_commands_run_headless_in_a_subprocess(tmp_path):
    """The example script: estimate_noise, train and denoise through npe2, no DISPLAY;
    neither Qt nor napari is imported."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['batch_npe2.py', {str(tmp_path)!r}]\n"
        f"runpy.run_path({str(ROOT / 'examples' / 'batch_npe2.py')!r}, run_name='__main__')\n"
        "qt = [m for m in sys.modules if m.split('.')[0] in "
        "('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari')]\n"
        "print('QT', qt)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=headless_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "QT []" in proc.stdout
    assert "first run: done 3, skipped 0, failed 0" in proc.stdout
    assert "re-run: done 0, skipped 3, failed 0" in proc.stdout
    assert (tmp_path / "model.n2s").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "cell_00.tif", "cell_01.tif", "cell_02.tif"]


def test_npe2_manifest_has_the_headless_commands():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(SRC / "napari_noise2score" / "napari.yaml")
    ids = {c.id for c in manifest.contributions.commands}
    assert {"napari-noise2score.train", "napari-noise2score.denoise",
            "napari-noise2score.estimate_noise", "napari-noise2score.train_widget"} <= ids


@pytest.mark.cluster
def test_local_cluster_gives_the_local_results(tmp_path, trained_model_file, monkeypatch):
    distributed = pytest.importorskip("distributed")

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH",
                                                                                 "")]))
    paths = write_images(tmp_path / "raw", 4)
    broken = tmp_path / "raw" / "img02b.tif"
    broken.write_bytes(b"not an image at all")
    # the same torch thread count on both paths: 1 thread and several sum convolutions in
    # another order (float32 rounding), so only the same count is bit-identical
    local = denoise_batch([tmp_path / "raw"], trained_model_file, tmp_path / "local", threads=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = denoise_batch([tmp_path / "raw"], trained_model_file, tmp_path / "cluster",
                               client=client, threads=1, distribute="files")
        workers = {r.worker for r in remote.done}
    assert (len(remote.done), len(remote.failed)) == (len(local.done), len(local.failed)) \
        == (4, 1)
    assert remote.failed[0].job == Job(broken, tmp_path / "cluster" / "img02b.tif")
    assert all(w and w.startswith("tcp://") for w in workers)
    for p in paths:
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "cluster" / p.name),
                                      tifffile.imread(tmp_path / "local" / p.name))


def test_usage_errors_exit_2_and_one_bad_input_keeps_its_message(tmp_path, trained_model_file,
                                                                 capsys):
    assert main(["denoise", str(tmp_path / "nothing" / "*.tif"), "--model", str(trained_model_file),
                 "-o", str(tmp_path / "out")]) == 2
    assert "no image matches" in capsys.readouterr().err
    a, b = tmp_path / "a", tmp_path / "b"
    write_images(a, 1), write_images(b, 1)
    assert main(["denoise", str(a), str(b), "--model", str(trained_model_file),
                 "-o", str(tmp_path / "out")]) == 2
    assert "share a file name" in capsys.readouterr().err
    assert main(["denoise", str(a), "--model", str(trained_model_file), "-o", str(tmp_path / "out"),
                 "--threads", "0"]) == 2
    assert "threads must be >= 1, not 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(Noise2ScoreError, match="distribute must be one of auto, files, tiles"):
        denoise_batch([a], trained_model_file, tmp_path / "out", distribute="planes")


def test_leftover_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path,
                                                                            trained_model_file):
    """A re-run removes what killed runs left: temporaries whose writer (host and pid in the
    name) is gone, or, when the name cannot say (another host, an older version), that
    nobody touched for a day. A live writer's temporary (another run sharing the folder)
    stays, and so does every file that is not a temporary output of this batch."""
    from napari_noise2score.io.chunked_writer import _host, temporaries

    write_images(tmp_path / "raw", 4)
    out = tmp_path / "out"
    out.mkdir()
    host = _host()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    day_ago = time.time() - 25 * 3600
    try:
        removed = {
            out / f".img00.tif.{host}.{dead.pid}.k2j4h5g6.tmp": "file",
            out / f".img01.tif.{host}.{dead.pid}.a1b2c3d4.tmp": "dir",  # a zarr-like folder
            out / ".img02.tif.otherhost.77.q1w2e3r4.tmp": "old",
        }
        kept = {
            out / f".img00.tif.{host}.{live.pid}.z9y8x7w6.tmp": "file",
            out / ".img01.tif.otherhost.78.p0o9i8u7.tmp": "file",  # recent, another host
            out / ".img03.tif.abcdefgh.tmp": "file",  # an older version's name, recent
            out / ".notes.tmp": "file",  # not a temporary output of this batch
            out / ".img99.tif.host.1.abc.tmp": "old",  # not an output of this batch
        }
        for path, kind in {**removed, **kept}.items():
            if kind == "dir":
                (path / "c" / "0").mkdir(parents=True)
                (path / "c" / "0" / "0").write_bytes(b"chunk")
            else:
                path.write_bytes(b"partial")
            if kind == "old":
                os.utime(path, (day_ago, day_ago))
        assert len(temporaries(out / "img00.tif")) == 2
        summary = denoise_batch([tmp_path / "raw"], trained_model_file, out)
        assert sorted(summary.cleaned) == sorted(removed)
        assert not any(p.exists() for p in removed)
        assert all(p.exists() for p in kept)
        assert len(summary.done) == 4
    finally:
        live.kill()
        live.wait()
    assert summary.to_dict()["cleaned"] == [str(p) for p in summary.cleaned]
