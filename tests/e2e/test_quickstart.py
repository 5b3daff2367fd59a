"""The README's two commands and the `gui` command, as a newcomer runs them."""

import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT


def test_readme_gives_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert "bash scripts/test.sh" in ci


@pytest.mark.skipif(not (ROOT / ".venv" / ".n2s-ready").exists(),
                    reason="needs the environment made by scripts/test.sh or scripts/demo.sh")
def test_demo_script_runs_the_main_job(tmp_path):
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k != "VENV"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), "--steps", "3",
                           "-o", str(out)], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "setting up" not in done.stdout  # an up-to-date environment is reused
    assert re.search(r"PSNR noisy [\d.]+ dB -> denoised [\d.]+ dB", done.stdout)
    assert {p.name for p in out.iterdir()} == {"noisy.tif", "denoised.tif", "clean.tif",
                                                "model.n2s"}


def test_scripts_parse():
    for name in ("demo.sh", "test.sh", "setup.sh", "_env.sh"):
        subprocess.run(["bash", "-n", str(ROOT / "scripts" / name)], check=True)


def test_gui_opens_sample_and_both_widgets(qtbot):
    from napari_noise2score.gui import open_viewer

    viewer = open_viewer(show=False)
    try:
        assert [layer.name for layer in viewer.layers] == ["noisy sample", "clean reference"]
        docked = set(viewer.window.dock_widgets)
        assert any("Train" in name for name in docked)
        assert any("Denoise" in name for name in docked)
    finally:
        viewer.close()


def test_gui_missing_file_is_one_clear_line(tmp_path):
    cmd = [sys.executable, "-m", "napari_noise2score", "gui", str(tmp_path / "nope.tif")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "no such file" in done.stderr


def test_auto_is_the_default_noise_model_everywhere_and_parameters_still_win():
    import inspect

    from napari_noise2score import _commands
    from napari_noise2score.api import make_config
    from napari_noise2score.cli import build_parser
    from napari_noise2score.core.config import TrainConfig

    assert TrainConfig().noise == "auto" and make_config().noise == "auto"
    for command in ("train", "run"):
        args = build_parser().parse_args([command, "x.tif", "-o", "m"])
        assert make_config(noise=args.noise).noise == "auto"
    assert inspect.signature(_commands.train).parameters["noise"].default is None
    assert make_config(noise=None).noise == "auto"
    # explicit parameters name the model
    assert make_config(sigma=25).noise == "gaussian"
    assert make_config(gain=2).noise == "poisson"
    assert make_config(gain=2, sigma=3).noise == "poisson-gaussian"
    assert make_config(shape=50).noise == "gamma"
    assert make_config(noise="gaussian", sigma=5).noise == "gaussian"
