"""The command line: train, denoise, run and demo; bad input exits non-zero, writes nothing."""

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from helpers import psnr, smooth_image
from napari_noise2score.cli import main
from napari_noise2score.core.noise import NoiseParams, simulate

FAST = ["--steps", "150", "--max-seconds", "60", "--patch-size", "48", "--batch-size", "8",
        "--device", "cpu"]


@pytest.fixture
def noisy_files(tmp_path):
    clean = np.stack([smooth_image(96, s) for s in range(2)]) * 200
    noisy = simulate(clean, NoiseParams("gaussian", sigma=25.0), seed=2)
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.tif"
        tifffile.imwrite(p, np.clip(noisy[i], 0, 255).astype(np.uint8))
        paths.append(p)
    return clean, paths


def test_train_then_denoise(tmp_path, noisy_files, capsys):
    clean, paths = noisy_files
    model = tmp_path / "m.n2s"
    assert main(["train", *map(str, paths), "-o", str(model), "--sigma", "25", *FAST]) == 0
    assert model.is_file()
    out = tmp_path / "out"
    assert main(["denoise", *map(str, paths), "--model", str(model), "-o", str(out)]) == 0
    results = [tifffile.imread(out / p.name) for p in paths]
    assert all(r.dtype == np.float32 and r.shape == (96, 96) for r in results)
    noisy0 = tifffile.imread(paths[0]).astype(np.float64)
    assert psnr(clean[0], results[0], 200) > psnr(clean[0], noisy0, 200) + 1


def test_run_writes_one_file_for_one_input(tmp_path, noisy_files):
    _, paths = noisy_files
    out = tmp_path / "den.tif"
    assert main(["run", str(paths[0]), "-o", str(out), "--sigma", "25", *FAST,
                 "--save-model", str(tmp_path / "k.n2s")]) == 0
    assert tifffile.imread(out).shape == (96, 96)
    assert (tmp_path / "k.n2s").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--sigma", "0"], "sigma must be > 0"),
        (["--noise", "gamma", "--shape", "1"], "k must be > 1"),
        (["--noise", "gaussian"], "needs --sigma"),
        (["--sigma", "25", "--axes", "ZYX"], "name 3 dimensions"),
    ],
)
def test_bad_parameters_exit_non_zero_and_write_nothing(tmp_path, noisy_files, capsys, extra,
                                                        message):
    _, paths = noisy_files
    out = tmp_path / "never.tif"
    assert main(["run", str(paths[0]), "-o", str(out), *FAST, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_unreadable_input_and_bad_model(tmp_path, capsys):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00garbage")
    assert main(["run", str(bad), "-o", str(tmp_path / "o.tif"), "--sigma", "1"]) == 2
    assert "cannot read" in capsys.readouterr().err
    good = tmp_path / "g.tif"
    tifffile.imwrite(good, np.random.default_rng(0).random((64, 64)).astype(np.float32))
    fake = tmp_path / "fake.n2s"
    fake.write_text("hello")
    assert main(["denoise", str(good), "--model", str(fake), "-o", str(tmp_path / "o.tif")]) == 2
    assert "not a readable napari-noise2score model" in capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists()


def test_output_may_not_overwrite_input(tmp_path, noisy_files, capsys):
    _, paths = noisy_files
    before = paths[0].read_bytes()
    assert main(["run", str(paths[0]), "-o", str(paths[0]), "--sigma", "25", *FAST]) == 2
    assert "overwrite its input" in capsys.readouterr().err
    assert paths[0].read_bytes() == before


def test_unknown_noise_name_is_a_usage_error(tmp_path, noisy_files):
    _, paths = noisy_files
    proc = subprocess.run(
        [sys.executable, "-m", "napari_noise2score", "train", str(paths[0]), "-o", "x.n2s",
         "--noise", "speckle"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "invalid choice: 'speckle'" in proc.stderr


def test_demo_runs_end_to_end(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "napari_noise2score", "demo", "-o", str(tmp_path / "d"),
         "--steps", "300"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PSNR")][0]
    before, after = (float(w) for w in line.replace("dB", "").split() if _is_number(w))
    assert after > before
    for name in ("noisy", "denoised", "clean"):
        assert (tmp_path / "d" / f"{name}.tif").is_file()


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True
