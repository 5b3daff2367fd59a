"""Issue 14, part 2: injected faults. Processes killed (-9) or interrupted mid-run, a disk
that fills while writing, inputs deleted or truncated during a batch, two runs writing one
output, a read-only output folder: never a partial or mixed output, a clear error, and a
re-run that finishes. Outcomes are counted (``helpers.record_case``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from helpers import env_with_src, record_case, smooth_image, tiny_model
from napari_noise2score.api import load_model
from napari_noise2score.batch import DONE, FAILED, denoise_batch
from napari_noise2score.cli import main
from napari_noise2score.io import outputs

TRAIN = ["--width", "4", "--depth", "1", "--patch-size", "32", "--batch-size", "2",
         "--device", "cpu", "--sigma", "20"]
DENOISE = ["--tile", "32", "--threads", "1", "--no-tta"]


def stack(path: Path, planes: int = 40, size: int = 96, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    data = np.clip(smooth_image(size, seed) * 200 + rng.normal(0, 20, (planes, size, size)),
                   0, 255).astype(np.uint8)
    tifffile.imwrite(path, data, metadata={"axes": "ZYX"})
    return path


def env() -> dict[str, str]:
    return env_with_src(OMP_NUM_THREADS="1")


def _default_sigint() -> None:
    """Ctrl-C as in a terminal: a test run in the background (``&``, CI) has SIGINT ignored,
    and a child would inherit that (Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    """The CLI in a subprocess; its stderr collected by a thread (tqdm writes no newlines)."""

    def __init__(self, *argv: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "napari_noise2score", *argv],
                                     env=env(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True,
                                     preexec_fn=_default_sigint)
        self.chunks: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while chunk := self.proc.stderr.read(1):
            self.chunks.append(chunk)

    @property
    def stderr(self) -> str:
        return "".join(self.chunks)

    def wait_for(self, ready, seconds: float = 120) -> None:
        """Poll until ``ready()``; the process must still run."""
        deadline = time.monotonic() + seconds
        while not ready():
            assert self.proc.poll() is None, self.stderr
            assert time.monotonic() < deadline, "the process never reached the fault point"
            time.sleep(0.02)

    def wait(self, seconds: float) -> int:
        code = self.proc.wait(seconds)
        self.reader.join(10)
        return code


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def cli(*argv: str) -> tuple[int, str]:
    """Run the CLI in this process: (exit status, stderr)."""
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue()


def error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and "Traceback" not in text, text
    return lines[-1]


# ---- kill -9 during denoise, run and train -o: no partial output; a re-run finishes -------

@pytest.mark.parametrize("command", ["denoise", "run", "train"])
def test_kill_9_leaves_no_partial_output_and_a_rerun_finishes(tmp_path, tiny_model_file, command):
    src = stack(tmp_path / "in.tif")
    out = tmp_path / ("model.n2s" if command == "train" else "out.tif")
    args = {"denoise": ["--model", str(tiny_model_file), *DENOISE],
            "run": ["--steps", "3", *TRAIN, *DENOISE],
            "train": ["--steps", "100000", "--max-seconds", "600", *TRAIN]}[command]
    run = Run(command, str(src), "-o", str(out), *args)
    try:
        if command == "train":  # killed while training: the model is written only at the end
            run.wait_for(lambda: "step" in run.stderr)
        else:
            run.wait_for(lambda: bool(temporaries(tmp_path)))
        run.proc.send_signal(signal.SIGKILL)
        run.wait(30)
    finally:
        run.proc.kill()
    partial = out.exists()
    if command == "train":
        args = ["--steps", "2", *TRAIN]
    code, err = cli(command, str(src), "-o", str(out), *args)
    finished = code == 0 and not temporaries(tmp_path)
    if finished:
        finished = (load_model(out, "cpu").steps == 2 if command == "train"
                    else tifffile.imread(out).shape == (40, 96, 96))
    record_case(f"kill -9 during {command}", "partial file" if partial else
                "accepted" if finished else "crash")
    assert not partial and finished, err


# ---- SIGINT during training and denoising: exit 130, nothing partial ---------------------

@pytest.mark.parametrize("phase", ["training", "denoising"])
def test_sigint_stops_cleanly_with_exit_130(tmp_path, tiny_model_file, phase):
    src = stack(tmp_path / "in.tif")
    out = tmp_path / "out.tif"
    model = tmp_path / "kept.n2s"
    if phase == "training":
        run = Run("run", str(src), "-o", str(out), "--save-model", str(model), "--steps",
                  "100000", "--max-seconds", "600", *TRAIN, *DENOISE)
        run.wait_for(lambda: "step" in run.stderr)
    else:
        run = Run("denoise", str(src), "--model", str(tiny_model_file), "-o", str(out), *DENOISE)
        run.wait_for(lambda: bool(temporaries(tmp_path)))
    run.proc.send_signal(signal.SIGINT)
    try:
        code = run.wait(60)
    except subprocess.TimeoutExpired:
        run.proc.kill()
        record_case(f"SIGINT during {phase}", "hang")
        raise
    err = run.stderr
    partial = out.exists() or model.exists() or bool(temporaries(tmp_path))
    clear = code == 130 and "interrupted" in error_line(err)
    record_case(f"SIGINT during {phase}", "partial file" if partial else
                "clear error" if clear else "crash")
    assert clear and not partial, (code, err)


# ---- a disk that fills while writing (a real 2 MiB tmpfs) ---------------------------------

@pytest.fixture
def small_disk(tmp_path, monkeypatch) -> Iterator[Path]:
    """A 2 MiB tmpfs, with the free-space check before the work told it is empty (as when
    another process fills the disk during the run), so that writes really run out."""
    disk = tmp_path / "disk"
    disk.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.strip()}")
    real = shutil.disk_usage
    monkeypatch.setattr(outputs.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=2**40))
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_full_disk_mid_write_keeps_earlier_results(tmp_path, tiny_model_file, small_disk):
    first = stack(tmp_path / "a.tif", planes=2, size=64)
    assert cli("denoise", str(first), "--model", str(tiny_model_file), "-o",
               str(small_disk / "a.tif"), *DENOISE)[0] == 0
    kept = (small_disk / "a.tif").read_bytes()
    big = stack(tmp_path / "b.tif", planes=60, size=96)  # 2.2 MB of float32
    code, err = cli("denoise", str(big), "--model", str(tiny_model_file), "-o",
                    str(small_disk / "b.tif"), *DENOISE)
    partial = (small_disk / "b.tif").exists() or bool(temporaries(small_disk))
    clear = code == 2 and "disk is full" in error_line(err)
    intact = (small_disk / "a.tif").read_bytes() == kept
    record_case("full disk during an image write", "partial file" if partial or not intact
                else "clear error" if clear else "crash")
    assert clear and not partial and intact, err


def test_full_disk_during_model_save(tmp_path, small_disk):
    filler = small_disk / "filler"
    filler.write_bytes(bytes(2 * 2**20 - 8 * 2**10))  # leave 8 KiB: less than the model
    code, err = cli("train", str(stack(tmp_path / "a.tif", planes=2, size=64)), "-o",
                    str(small_disk / "m.n2s"), "--steps", "1", *TRAIN)
    partial = (small_disk / "m.n2s").exists() or bool(temporaries(small_disk))
    clear = code == 2 and "disk is full" in error_line(err)
    record_case("full disk during a model save", "partial file" if partial else
                "clear error" if clear else "crash")
    assert clear and not partial, err


# ---- inputs deleted or truncated while a batch runs --------------------------------------

@pytest.mark.parametrize("kind", ["tif", "npy"])
def test_inputs_deleted_or_truncated_during_a_batch(tmp_path, tiny_model_file, kind):
    """File 1 is denoised; when its last tile is done, file 2 is deleted; file 3 is
    truncated to half while its first plane is denoised. Run in a subprocess: a memory-
    mapped .npy cut short could kill the process (SIGBUS)."""
    script = tmp_path / "batch.py"
    script.write_text(f"""
import sys, numpy as np, tifffile
from pathlib import Path
from napari_noise2score.batch import denoise_batch
d = Path({str(tmp_path)!r})
files = [d / f"f{{i}}.{kind}" for i in range(3)]
for i, f in enumerate(files):
    data = np.random.default_rng(i).integers(0, 255, (20, 64, 64)).astype(np.float32)
    np.save(f, data) if f.suffix == ".npy" else tifffile.imwrite(f, data,
                                                               metadata={{"axes": "ZYX"}})
def progress_for(job):
    def progress(done, total):
        if job.source == files[0] and done == total:
            files[1].unlink()
        if job.source == files[2] and done == 1:
            with open(files[2], "r+b") as f:
                f.truncate(files[2].stat().st_size // 2)
    return progress
s = denoise_batch([str(f) for f in files], {str(tiny_model_file)!r}, d / "out", tile=64,
                  progress_for=progress_for, axes="ZYX")
for r in s.results:
    print(r.job.source.name, r.status, (r.error or "").replace(chr(10), " "))
""")
    proc = subprocess.run([sys.executable, str(script)], env=env(), capture_output=True,
                          text=True, timeout=300)
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    out = tmp_path / "out"
    partial = bool(temporaries(tmp_path)) or (out / "f1.tif").exists() or (
        out / "f2.tif").exists()
    ok = (proc.returncode == 0 and lines.get(f"f0.{kind}", "").startswith(DONE)
          and all(lines.get(f"f{i}.{kind}", "").startswith(FAILED) for i in (1, 2))
          and "Traceback" not in proc.stdout)
    record_case("input deleted or truncated during a batch", "partial file" if partial else
                "clear error" if ok else "crash")
    assert ok and not partial, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert tifffile.imread(out / "f0.tif").shape == (20, 64, 64)


# ---- two processes writing one output --------------------------------------------------------

def test_two_processes_writing_one_output_never_mix(tmp_path, tiny_model_file):
    a, b = stack(tmp_path / "a.tif", seed=1), stack(tmp_path / "b.tif", seed=2)
    expected = {}
    for src in (a, b):
        ref = tmp_path / f"ref_{src.stem}.tif"
        assert cli("denoise", str(src), "--model", str(tiny_model_file), "-o", str(ref),
                   *DENOISE)[0] == 0
        expected[src.stem] = tifffile.imread(ref)
    out = tmp_path / "same.tif"
    runs = [Run("denoise", str(src), "--model", str(tiny_model_file), "-o", str(out),
                "--overwrite", *DENOISE) for src in (a, b)]
    codes = [r.wait(300) for r in runs]
    errs = [r.stderr for r in runs]
    result = tifffile.imread(out)
    whole = any(np.array_equal(result, e) for e in expected.values())
    clean = all(c in (0, 2) for c in codes) and 0 in codes and not temporaries(tmp_path)
    record_case("two processes writing one output", "accepted" if whole and clean else
                "partial file" if not whole else "crash")
    assert whole and clean, (codes, errs)


# ---- a read-only output folder (as a user the folder's permissions apply to) -------------

def test_read_only_output_folder_as_non_root(tmp_path, tiny_model_file):
    """As root, the run drops the capabilities that let root write anywhere (the user
    nobody cannot reach this interpreter); a real user runs as itself."""
    src = stack(tmp_path / "in.tif", planes=2, size=64)
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv to drop the override capabilities")
        caps = "dac_override,dac_read_search,fowner"
        prefix = ["setpriv", f"--bounding-set=-{caps.replace(',', ',-')}",
                  f"--inh-caps=-{caps.replace(',', ',-')}"]
    try:
        for command, args in (("denoise", ["--model", str(tiny_model_file), *DENOISE]),
                              ("train", ["--steps", "1", *TRAIN])):
            out = folder / ("m.n2s" if command == "train" else "o.tif")
            proc = subprocess.run([*prefix, sys.executable, "-m", "napari_noise2score",
                                   command, str(src), "-o", str(out), *args], env=env(),
                                  capture_output=True, text=True, timeout=300)
            clear = proc.returncode == 2 and "read-only" in error_line(proc.stderr)
            partial = bool(list(folder.iterdir()))
            record_case("read-only output folder", "partial file" if partial else
                        "clear error" if clear else "crash")
            assert clear and not partial, proc.stderr
    finally:
        folder.chmod(0o755)


def test_deleted_batch_input_is_reported_by_the_api(tmp_path, tiny_model_file):
    """The API path of the batch fault in this process: a vanished file is one failure."""
    files = [stack(tmp_path / f"f{i}.tif", planes=2, size=64, seed=i) for i in range(2)]
    files[1].unlink()
    summary = denoise_batch([str(f) for f in files] + [], tiny_model_file, tmp_path / "out")
    assert [r.status for r in summary.results] == [DONE, FAILED]
    assert "not found" in summary.failed[0].error


def test_torch_write_failure_is_a_clear_output_error(tmp_path, monkeypatch):
    """Regression: torch.save on a full disk raises RuntimeError (no errno), which escaped
    Noise2ScoreModel.save as a traceback."""
    from napari_noise2score.core import errors, model

    def failing(payload, f):
        Path(f).write_bytes(b"PK partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")

    monkeypatch.setattr(model.torch, "save", failing)
    monkeypatch.setattr(model.os, "statvfs", lambda p: os.statvfs_result((4096,) * 3 + (0,) * 7))
    with pytest.raises(errors.OutputError, match="disk is full"):
        tiny_model().save(tmp_path / "m.n2s")
    assert not list(tmp_path.iterdir())
