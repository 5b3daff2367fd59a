"""Regression tests for issue 17's data-loss and error-handling defects (items 1, 3, 5, 9-13)
and issue 13's output permissions: no output of any command replaces an input, whatever the
path spelling; every output location is checked before any work; each error is one line."""

import errno
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from helpers import ROOT, env_with_src, smooth_image
from napari_noise2score import cli
from napari_noise2score.api import denoise_file, load_model
from napari_noise2score.api import train as api_train
from napari_noise2score.cli import main
from napari_noise2score.core.config import TrainConfig
from napari_noise2score.core.errors import ModelFileError, Noise2ScoreError, OutputError
from napari_noise2score.core.model import Noise2ScoreModel, build_network
from napari_noise2score.core.network import ScoreUNet
from napari_noise2score.core.training import choose_patch
from napari_noise2score.io import chunked_writer, outputs
from napari_noise2score.io.chunked_writer import check_output

TINY = ["--steps", "2", "--max-seconds", "60", "--width", "8", "--depth", "2",
        "--patch-size", "32", "--batch-size", "4", "--device", "cpu"]
SPELLINGS = ("same", "symlink", "hardlink", "dotdot", "absolute")
Usage = namedtuple("Usage", "total used free")


def random_model(noise: str = "gaussian", scale: float = 255.0, **params) -> Noise2ScoreModel:
    """A small untrained network (no training needed to exercise files and checks)."""
    params = params or {"sigma": 20.0}
    cfg = TrainConfig(noise=noise, width=8, depth=2, unshuffle=2, max_steps=1, **params)
    torch.manual_seed(0)
    return Noise2ScoreModel(cfg, build_network(cfg).eval(), scale=scale, final_sigma_a=0.03)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.n2s"
    random_model().save(path)
    return path


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "X.tif"
    noise = np.random.default_rng(0).normal(0, 20, (64, 64))
    tifffile.imwrite(path, np.clip(smooth_image(64) * 200 + noise, 0, 255).astype(np.uint8))
    return path


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if training starts: the checks must come before it."""
    def trained(*args, **kwargs):
        raise AssertionError("training started before the output was checked")
    monkeypatch.setattr(cli, "_train_with_bar", trained)


def spelled(spelling: str, target: Path, monkeypatch) -> str:
    """Another name of ``target``: itself, a symlink, a hardlink, via '..', or absolute while
    the input is given relative (from its folder)."""
    folder = target.parent
    if spelling == "symlink":
        (folder / f"link{target.suffix}").symlink_to(target)
        return str(folder / f"link{target.suffix}")
    if spelling == "hardlink":
        os.link(target, folder / f"hard{target.suffix}")
        return str(folder / f"hard{target.suffix}")
    if spelling == "dotdot":
        (folder / "sub").mkdir()
        return str(folder / "sub" / ".." / target.name)
    if spelling == "absolute":
        monkeypatch.chdir(folder)
    return str(target.resolve())


def input_arg(spelling: str, path: Path) -> str:
    return path.name if spelling == "absolute" else str(path)


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob("*.tmp")]


# ---- item 1: a model file never replaces an input --------------------------------------

@pytest.mark.parametrize("spelling", SPELLINGS)
def test_train_model_output_never_replaces_its_input(tmp_path, image, capsys, monkeypatch,
                                                     no_training, spelling):
    before = image.read_bytes()
    out = spelled(spelling, image, monkeypatch)
    assert main(["train", input_arg(spelling, image), "-o", out, "--sigma", "10", *TINY]) == 2
    assert "would overwrite its input" in one_line(capsys.readouterr().err)
    assert image.read_bytes() == before


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_run_save_model_never_replaces_its_input(tmp_path, image, capsys, monkeypatch,
                                                 no_training, spelling):
    before = image.read_bytes()
    model = spelled(spelling, image, monkeypatch)
    assert main(["run", input_arg(spelling, image), "-o", str(tmp_path / "out.tif"),
                 "--save-model", model, "--sigma", "10", *TINY]) == 2
    assert "would overwrite its input" in one_line(capsys.readouterr().err)
    assert image.read_bytes() == before and not (tmp_path / "out.tif").exists()


def test_run_save_model_onto_the_denoised_output_is_refused(tmp_path, image, capsys,
                                                            no_training):
    out = tmp_path / "out.tif"
    assert main(["run", str(image), "-o", str(out), "--save-model", str(out),
                 "--sigma", "10", *TINY]) == 2
    assert "same file" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_denoise_output_never_replaces_the_model_file(tmp_path, image, capsys, monkeypatch,
                                                      spelling):
    model = tmp_path / "model.tif"  # a model file with an image's name
    random_model().save(model)
    before = model.read_bytes()
    out = spelled(spelling, model, monkeypatch)
    assert main(["denoise", str(image.resolve()), "--model", input_arg(spelling, model),
                 "-o", out]) == 2
    assert "would overwrite its input" in one_line(capsys.readouterr().err)
    assert model.read_bytes() == before


def test_zarr_output_never_replaces_a_folder_holding_its_input(tmp_path, model_file, capsys):
    store = tmp_path / "data.zarr"
    store.mkdir()
    src = store / "img.tif"
    tifffile.imwrite(src, np.zeros((64, 64), np.uint8))
    assert main(["denoise", str(src), "--model", str(model_file), "-o", str(store)]) == 2
    assert "would overwrite its input" in one_line(capsys.readouterr().err)
    assert src.is_file()


# ---- item 3: one input's unexpected error keeps its reason, exit 2 ----------------------

def test_single_input_unexpected_error_reason_is_printed_with_exit_2(image, model_file,
                                                                     tmp_path, capsys,
                                                                     monkeypatch):
    import napari_noise2score.pipeline as pipeline

    def crashes(*args, **kwargs):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(pipeline, "denoise_file", crashes)
    assert main(["denoise", str(image), "--model", str(model_file),
                 "-o", str(tmp_path / "o.tif")]) == 2
    err = capsys.readouterr().err
    assert "ZeroDivisionError: float division by zero" in err and "files failed" not in err


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
def test_model_with_bad_stored_scale_is_refused_at_load_as_a_scale_error(tmp_path, image,
                                                                         capsys, scale):
    bad = tmp_path / "bad.n2s"
    random_model(scale=scale).save(bad)
    with pytest.raises(ModelFileError, match="intensity scale"):
        load_model(bad, "cpu")
    assert main(["denoise", str(image), "--model", str(bad), "-o", str(tmp_path / "o.tif")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "intensity scale" in line and "sigma" not in line


# ---- item 5: every output location checked before any work ------------------------------

def test_train_into_an_existing_folder_is_refused_before_training(tmp_path, image, capsys,
                                                                  no_training):
    (tmp_path / "models").mkdir()
    assert main(["train", str(image), "-o", str(tmp_path / "models"), "--sigma", "10",
                 *TINY]) == 2
    assert "a folder of that name exists" in one_line(capsys.readouterr().err)


def read_only(monkeypatch, folder: Path) -> None:
    """Simulate a read-only folder (root ignores real permissions)."""
    real = os.access
    monkeypatch.setattr(outputs.os, "access",
                        lambda p, m, **kw: Path(p) != folder and real(p, m, **kw))


def full_disk(monkeypatch, free: int = 500) -> None:
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - free, free))


def test_train_into_a_read_only_folder_is_refused_before_training(tmp_path, image, capsys,
                                                                  monkeypatch, no_training):
    read_only(monkeypatch, tmp_path)
    assert main(["train", str(image), "-o", str(tmp_path / "m.n2s"), "--sigma", "10",
                 *TINY]) == 2
    assert "read-only" in one_line(capsys.readouterr().err)


def test_train_onto_a_full_disk_is_refused_before_training(tmp_path, image, capsys,
                                                           monkeypatch, no_training):
    full_disk(monkeypatch)
    assert main(["train", str(image), "-o", str(tmp_path / "m.n2s"), "--sigma", "10",
                 *TINY]) == 2
    assert "the disk has 500 B free" in one_line(capsys.readouterr().err)


def test_run_save_model_into_a_read_only_folder_is_refused_before_training(tmp_path, image,
                                                                           capsys,
                                                                           monkeypatch,
                                                                           no_training):
    locked = tmp_path / "models"
    locked.mkdir()
    read_only(monkeypatch, locked)
    assert main(["run", str(image), "-o", str(tmp_path / "o.tif"), "--save-model",
                 str(locked / "m.n2s"), "--sigma", "10", *TINY]) == 2
    assert "read-only" in one_line(capsys.readouterr().err)


def test_run_image_output_into_a_read_only_folder_is_refused_before_training(
        tmp_path, image, capsys, monkeypatch, no_training):
    locked = tmp_path / "out"
    locked.mkdir()
    read_only(monkeypatch, locked)
    assert main(["run", str(image), "-o", str(locked / "o.tif"), "--sigma", "10", *TINY]) == 2
    assert "read-only" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("case", ["existing file", "read-only", "full disk"])
def test_demo_output_is_checked_before_training(tmp_path, capsys, monkeypatch, no_training,
                                                case):
    out = tmp_path / "demo"
    if case == "existing file":
        out.write_text("not a folder")
    elif case == "read-only":
        read_only(monkeypatch, tmp_path)
    else:
        full_disk(monkeypatch)
    assert main(["demo", "-o", str(out), "--steps", "2", "--device", "cpu"]) == 2
    line = one_line(capsys.readouterr().err)
    assert {"existing file": "it is a file", "read-only": "read-only",
            "full disk": "500 B free"}[case] in line


def test_train_with_a_huge_width_is_one_clear_line(tmp_path, image, capsys, no_training):
    assert main(["train", str(image), "-o", str(tmp_path / "m.n2s"), "--sigma", "10",
                 "--width", "1000000", "--steps", "2", "--device", "cpu"]) == 2
    assert "width must be an integer from 1 to" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "m.n2s").exists()


def test_allocation_failure_while_training_is_one_clear_error(monkeypatch):
    from napari_noise2score.core import training

    def no_memory(cfg):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 36000000000000 bytes")

    monkeypatch.setattr(training, "build_network", no_memory)
    with pytest.raises(Noise2ScoreError, match="out of memory while training"):
        api_train(smooth_image(64), noise="gaussian", sigma=0.1, max_steps=2, device="cpu",
                  init="scratch")  # the network built from scratch


def test_model_save_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    def disk_full(payload, f):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OutputError, match="the disk is full"):
        random_model().save(tmp_path / "m.n2s")
    assert not any(tmp_path.iterdir())


# ---- item 9: impossible or irrelevant values refused ------------------------------------

@pytest.mark.parametrize("noise, params, extra, message", [
    ("gaussian", {"sigma": 20.0}, ["--gain", "0"], "gain does not apply to gaussian"),
    ("gaussian", {"sigma": 20.0}, ["--gain", "2"], "gain does not apply to gaussian"),
    ("poisson", {"gain": 2.0}, ["--shape", "0.5"], "shape does not apply to poisson"),
    ("poisson", {"gain": 2.0}, ["--sigma", "3"], "sigma does not apply to poisson"),
])
def test_denoise_parameter_that_does_not_apply_to_the_model_is_refused(
        tmp_path, image, capsys, noise, params, extra, message):
    model = tmp_path / f"{noise}.n2s"
    random_model(noise, **params).save(model)
    assert main(["denoise", str(image), "--model", str(model), "-o", str(tmp_path / "o.tif"),
                 *extra]) == 2
    assert message in one_line(capsys.readouterr().err)
    assert not (tmp_path / "o.tif").exists()


def test_train_parameter_that_does_not_apply_is_refused(tmp_path, image, capsys, no_training):
    assert main(["train", str(image), "-o", str(tmp_path / "m.n2s"), "--noise", "gaussian",
                 "--sigma", "10", "--gain", "2", *TINY]) == 2
    assert "gain does not apply to gaussian" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("extra, message", [
    (["--workers", "0"], "workers must be >= 1, not 0"),
    (["--memory", "-5"], "memory must be > 0 MiB, not -5"),
    (["--tile", "0"], "tile must be >= 1, not 0"),
])
def test_impossible_batch_numbers_are_refused_before_any_work(tmp_path, image, model_file,
                                                              capsys, no_training, extra,
                                                              message):
    assert main(["denoise", str(image), "--model", str(model_file),
                 "-o", str(tmp_path / "o.tif"), *extra]) == 2
    assert message in one_line(capsys.readouterr().err)
    assert main(["run", str(image), "-o", str(tmp_path / "o.tif"), "--sigma", "10", *TINY,
                 *extra]) == 2
    assert message in one_line(capsys.readouterr().err)


def test_library_refuses_zero_workers_and_negative_memory(tmp_path, image, model_file):
    from napari_noise2score.batch import denoise_batch

    with pytest.raises(Noise2ScoreError, match="workers must be >= 1"):
        denoise_batch([image], model_file, tmp_path / "o.tif", workers=0)
    with pytest.raises(Noise2ScoreError, match="memory for a tile must be > 0"):
        denoise_file(image, model_file, tmp_path / "o.tif", memory=-5 * 2**20)


# ---- item 10: temporaries of killed writers removed -------------------------------------

def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_model_save_removes_temporaries_left_by_killed_saves(tmp_path):
    host = chunked_writer._host()
    dead = tmp_path / f".m.n2s.{host}.{dead_pid()}.abc123.tmp"
    old = tmp_path / ".m.n2s.k3j4h5x1.tmp"  # an older version's name, untouched for 2 days
    live = tmp_path / f".m.n2s.{host}.{os.getpid()}.zzz999.tmp"  # a live writer's
    for path in (dead, old, live):
        path.write_bytes(b"partial model")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    random_model().save(tmp_path / "m.n2s")
    assert not dead.exists() and not old.exists() and live.exists()
    assert load_model(tmp_path / "m.n2s", "cpu").steps == 0


def test_sigterm_removes_the_temporary_output(tmp_path, model_file):
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, np.random.default_rng(0).integers(0, 255, (60, 128, 128), np.uint8),
                     metadata={"axes": "ZYX"})
    out = tmp_path / "o.tif"
    env = env_with_src()
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_noise2score", "denoise", str(src), "--model",
         str(model_file), "-o", str(out), "--tile", "32", "--threads", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".o.tif.*.tmp")):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no temporary output appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    assert "terminated" in proc.stderr.read()
    assert not out.exists() and no_temporaries(tmp_path)


# ---- item 11: a hardlinked output is refused, an image-like name is never a folder ------

def test_hardlinked_output_is_refused_not_skipped(tmp_path, image, model_file, capsys):
    out = tmp_path / "out.tif"
    os.link(image, out)
    assert main(["denoise", str(image), "--model", str(model_file), "-o", str(out)]) == 2
    assert "would overwrite its input" in one_line(capsys.readouterr().err)
    folder = tmp_path / "results"
    folder.mkdir()
    os.link(image, folder / image.name)
    other = tmp_path / "Y.tif"
    shutil.copy(image, other)
    assert main(["denoise", str(image), str(other), "--model", str(model_file),
                 "-o", str(folder)]) == 2
    assert "would overwrite its input" in one_line(capsys.readouterr().err)
    assert not (folder / "Y.tif").exists()


@pytest.mark.parametrize("name", ["out.png", "out.jpg", "out.npy"])
def test_image_like_output_name_is_refused_not_made_a_folder(tmp_path, image, model_file,
                                                             capsys, name):
    assert main(["denoise", str(image), "--model", str(model_file),
                 "-o", str(tmp_path / name)]) == 2
    assert ".tif, .tiff or .zarr" in one_line(capsys.readouterr().err)
    assert not (tmp_path / name).exists()


# ---- item 12: helpful messages -----------------------------------------------------------

def test_short_write_on_a_full_disk_says_the_disk_is_full(tmp_path, image, monkeypatch):
    def short_write(tmp, *_args):
        Path(tmp).write_bytes(b"part")
        raise OSError("262144 requested and 261048 written")

    monkeypatch.setattr(chunked_writer, "_write_tiff", short_write)
    with pytest.raises(OutputError, match="the disk is full") as info:
        denoise_file(image, random_model(), tmp_path / "o.tif")
    assert "requested" not in str(info.value)
    assert not (tmp_path / "o.tif").exists() and no_temporaries(tmp_path)


def test_space_check_gives_small_sizes_in_sensible_units(tmp_path, monkeypatch):
    full_disk(monkeypatch, free=100)
    with pytest.raises(OutputError) as info:
        check_output(tmp_path / "o.tif", 5000)
    assert "needs 4.9 KiB, the disk has 100 B free" in str(info.value)
    assert outputs.format_bytes(3 * 2**20) == "3.0 MiB"


def test_too_deep_network_message_says_which_depth_fits(tmp_path, image, capsys):
    net = ScoreUNet(width=4, depth=6, unshuffle=2)
    with pytest.raises(Noise2ScoreError, match="choose a depth of 4 or less"):
        choose_patch([np.zeros((1, 32, 32))], 64, net)
    assert main(["train", str(image), "-o", str(tmp_path / "m.n2s"), "--sigma", "10",
                 "--depth", "50", "--steps", "2", "--width", "4", "--device", "cpu"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert str(2 * 2**50) not in line and "depth" in line


@pytest.mark.parametrize("compression", ["lzw", "jpeg2000"])
def test_lzw_and_jpeg2000_tiffs_are_read(tmp_path, image, model_file, compression):
    src = tmp_path / f"{compression}.tif"
    tifffile.imwrite(src, tifffile.imread(image), compression=compression)
    assert main(["denoise", str(src), "--model", str(model_file),
                 "-o", str(tmp_path / "o.tif")]) == 0
    assert tifffile.imread(tmp_path / "o.tif").shape == (64, 64)


def test_imagecodecs_is_declared_for_compressed_tiffs():
    project = (ROOT / "pyproject.toml").read_text()
    requires = project.split("\ndependencies = [")[1].split("]")[0]
    assert "imagecodecs" in requires


def test_shape_mismatch_model_error_is_one_short_line(tmp_path, model_file):
    payload = torch.load(model_file, map_location="cpu", weights_only=True)
    payload["config"]["width"] = 16
    bad = tmp_path / "bad.n2s"
    torch.save(payload, bad)
    with pytest.raises(ModelFileError, match="damaged model file") as info:
        load_model(bad, "cpu")
    message = str(info.value)
    assert "\n" not in message and len(message) < 400 and "more)" in message


def test_huge_header_tiff_gives_the_clear_error_without_tifffile_noise(tmp_path, model_file,
                                                                       caplog, capsys):
    src = tmp_path / "huge.tif"
    tifffile.imwrite(src, np.zeros((64, 64), np.uint8))
    with tifffile.TiffFile(src, mode="r+") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(10**6)
        tif.pages[0].tags["ImageLength"].overwrite(10**6)
    with caplog.at_level(logging.WARNING):
        assert main(["denoise", str(src), "--model", str(model_file),
                     "-o", str(tmp_path / "o.tif")]) == 2
    assert "truncated" in one_line(capsys.readouterr().err)
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]


# ---- item 13: estimate reports every file ------------------------------------------------

def test_estimate_reports_every_file_and_exits_1_when_one_failed(tmp_path, capsys):
    image, other = tmp_path / "X.tif", tmp_path / "Y.tif"
    for seed, path in enumerate((image, other)):
        flat = 100 + np.random.default_rng(seed).normal(0, 5, (128, 128))
        tifffile.imwrite(path, flat.astype(np.float32))
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00garbage")
    files = [str(image), str(broken), str(other)]
    assert main(["estimate", *files]) == 1
    captured = capsys.readouterr()
    assert captured.out.count(": gaussian") + captured.out.count(": poisson") == 2
    assert "failed" in captured.err and "broken.tif" in captured.err
    assert main(["estimate", *files, "--json"]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in rows] == files and "error" in rows[1] and "model" in rows[2]
    assert main(["estimate", str(broken)]) == 2
    assert "cannot read" in one_line(capsys.readouterr().err)


# ---- issue 13: outputs get the permissions the umask gives ------------------------------

@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_denoise_outputs_get_the_umask_permissions(tmp_path, image, model_file, umask):
    for out in (tmp_path / "o.tif", tmp_path / "o.zarr"):
        assert main(["denoise", str(image), "--model", str(model_file), "-o", str(out)]) == 0
    assert mode(tmp_path / "o.tif") == 0o666 & ~umask
    assert mode(tmp_path / "o.zarr") == 0o777 & ~umask


def test_run_and_train_outputs_get_the_umask_permissions(tmp_path, image, umask):
    assert main(["run", str(image), "-o", str(tmp_path / "o.tif"), "--save-model",
                 str(tmp_path / "k.n2s"), "--sigma", "10", *TINY]) == 0
    assert main(["train", str(image), "-o", str(tmp_path / "m.n2s"), "--sigma", "10",
                 *TINY]) == 0
    for name in ("o.tif", "k.n2s", "m.n2s"):
        assert mode(tmp_path / name) == 0o666 & ~umask, name


def test_napari_writer_output_gets_the_umask_permissions(tmp_path, umask):
    from napari_noise2score._writer import write_image

    data = np.zeros((2, 32, 32), np.float32)
    path = str(tmp_path / "w.tif")
    assert write_image(path, data, {"metadata": {"axes": "ZYX"}}) == [path]
    assert mode(path) == 0o666 & ~umask
