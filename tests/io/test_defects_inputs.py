"""Regression tests for issue 17 (inputs): TIFF series, bounded architectures, non-finite
models, physical calibration, RGB PNG, npe2 argument checks; and issue 13's --dtype."""

import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from helpers import SRC, smooth_image
from napari_noise2score._commands import denoise as npe2_denoise
from napari_noise2score._commands import estimate_noise as npe2_estimate
from napari_noise2score._commands import train as npe2_train
from napari_noise2score.api import denoise, denoise_file, load_model, open_lazy
from napari_noise2score.cli import main
from napari_noise2score.core.config import LIMITS, TrainConfig
from napari_noise2score.core.errors import (
    InputFileError,
    ModelFileError,
    Noise2ScoreError,
    OutputError,
)
from napari_noise2score.core.model import Noise2ScoreModel, build_network
from napari_noise2score.core.network import ScoreUNet
from napari_noise2score.io.chunked_writer import write_planes

FAST = ["--steps", "3", "--max-seconds", "60", "--patch-size", "32", "--batch-size", "2",
        "--width", "4", "--depth", "1", "--device", "cpu"]


def tiny_model(tail_std: float = 0.05) -> Noise2ScoreModel:
    """A width-8 depth-2 network with random (non-zero) output; no training."""
    cfg = TrainConfig(noise="gaussian", sigma=20.0, width=8, depth=2, unshuffle=2, max_steps=1,
                      decorrelate=1, tta=False)
    torch.manual_seed(0)
    net = build_network(cfg)
    torch.nn.init.normal_(net.tail.weight, std=tail_std)
    return Noise2ScoreModel(cfg, net.eval(), scale=255.0, final_sigma_a=0.03)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return tiny_model().save(tmp_path_factory.mktemp("model") / "tiny.n2s")


def noisy(shape, seed=0, dtype=np.uint16) -> np.ndarray:
    clean = smooth_image(max(shape[-2:]), seed)[: shape[-2], : shape[-1]] * 200
    rng = np.random.default_rng(seed)
    return np.clip(clean + rng.normal(0, 20, shape), 0, 255).astype(dtype)


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error printed"
    assert "Traceback" not in "\n".join(err)
    return err[-1]


# --- 2. TIFF series after the first are silently dropped ------------------------------------

def two_series(path: Path) -> Path:
    with tifffile.TiffWriter(path) as tif:
        tif.write(noisy((64, 64), 0))
        tif.write(noisy((3, 96, 80), 1), photometric="minisblack")
    return path


def test_tiff_series_after_the_first_are_not_dropped(tmp_path, model_file, capsys):
    src = two_series(tmp_path / "two.tif")
    out = tmp_path / "out.tif"
    assert main(["denoise", str(src), "--model", str(model_file), "-o", str(out)]) == 2
    line = error_line(capsys)
    assert "2 image series" in line and "(3, 96, 80)" in line and "--series" in line
    assert not out.exists()
    assert main(["denoise", str(src), "--model", str(model_file), "-o", str(out),
                 "--series", "1"]) == 0
    assert tifffile.imread(out).shape == (3, 96, 80)
    assert main(["denoise", str(src), "--model", str(model_file), "-o", str(out),
                 "--series", "2", "--overwrite"]) == 2
    assert "no series 2" in error_line(capsys)
    ran = tmp_path / "run.tif"
    assert main(["run", str(src), "-o", str(ran), "--sigma", "20", *FAST, "--series", "1"]) == 0
    assert tifffile.imread(ran).shape == (3, 96, 80)

    with pytest.raises(InputFileError, match="2 image series"):
        denoise_file(src, model_file, tmp_path / "api.tif")
    assert open_lazy(src, series=1)[0].shape == (3, 96, 80)
    first = denoise_file(src, model_file, tmp_path / "api0.tif", series=0)
    assert tifffile.imread(first).shape == (64, 64)
    failed = npe2_denoise(str(src), str(model_file), str(tmp_path / "npe2.tif"))["failed"]
    assert "choose one with series=N" in failed[str(src)]
    assert "error" not in npe2_estimate(str(src), series=1)[0]


# --- 4. Hangs with no limit: architecture values bounded, checked at load -------------------

def test_architecture_values_are_bounded_and_checked_at_load(tmp_path, model_file, capsys):
    for name, (lo, hi) in LIMITS.items():
        with pytest.raises(Noise2ScoreError, match=f"{name} must be an integer from {lo}"):
            TrainConfig(sigma=1.0, max_steps=1, **{name: hi + 1}).validate()
        TrainConfig(sigma=1.0, max_steps=1, **{name: hi}).validate()
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, noisy((64, 64)))
    for flag, value in (("--depth", "100000"), ("--width", "1000000"), ("--depth", "50")):
        start = time.perf_counter()
        assert main(["train", str(src), "-o", str(tmp_path / "m.n2s"), "--sigma", "20",
                     "--max-seconds", "3", flag, value]) == 2
        assert time.perf_counter() - start < 5
        line = error_line(capsys)
        assert f"{flag[2:]} must be an integer from 1 to" in line
        assert "2251799813685248" not in line

    # a model file whose stored depth is out of range, weights consistent: refused at load
    payload = torch.load(model_file, weights_only=True)
    payload["config"]["depth"] = 7
    payload["state_dict"] = ScoreUNet(8, 7, 2, 1).state_dict()
    deep = tmp_path / "deep.n2s"
    torch.save(payload, deep)
    with pytest.raises(ModelFileError, match="depth must be an integer from 1 to 6"):
        load_model(deep, device="cpu")
    payload["config"]["depth"] = 1_000_000  # would hang building the network
    torch.save(payload, deep)
    start = time.perf_counter()
    assert main(["denoise", str(src), "--model", str(deep), "-o", str(tmp_path / "o.tif"),
                 "--device", "cpu"]) == 2
    assert time.perf_counter() - start < 10
    assert "damaged model file: depth must be an integer" in error_line(capsys)


def test_time_budget_covers_building_the_network(monkeypatch):
    from napari_noise2score import train
    from napari_noise2score.core import training

    def slow_build(config):
        time.sleep(1.0)
        return build_network(config)

    monkeypatch.setattr(training, "build_network", slow_build)
    model = train(noisy((64, 64)), sigma=20.0, max_seconds=0.5, width=4, depth=1,
                  patch_size=32, batch_size=2, device="cpu")
    assert model.steps == 1 and model.seconds >= 1.0


# --- 6. A model with NaN weights gives an all-NaN result with exit 0 ------------------------

def test_nan_weights_are_refused_and_no_all_nan_output_is_written(tmp_path, capsys):
    broken = tiny_model()
    with torch.no_grad():
        broken.net.tail.bias.fill_(float("nan"))
    path = broken.save(tmp_path / "nan.n2s")
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        load_model(path, device="cpu")
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, noisy((64, 64)))
    out = tmp_path / "out.tif"
    assert main(["denoise", str(src), "--model", str(path), "-o", str(out)]) == 2
    assert "NaN or infinite" in error_line(capsys)
    assert not out.exists()

    planes = (np.full((8, 8), np.nan, np.float32) for _ in range(2))
    with pytest.raises(OutputError, match="NaN or infinite"):
        write_planes(out, planes, (2,), (8, 8), "TYX")
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
    some = [np.full((8, 8), np.nan, np.float32), np.ones((8, 8), np.float32)]
    write_planes(out, iter(some), (2,), (8, 8), "TYX")  # partly finite: written
    assert np.isnan(tifffile.imread(out)[0]).all()


# --- 7. Physical calibration is lost --------------------------------------------------------

def test_tiff_output_keeps_axes_and_physical_pixel_size(tmp_path, model_file):
    ij = tmp_path / "ij.tif"
    tifffile.imwrite(ij, noisy((3, 64, 64)), imagej=True, resolution=(4.0, 4.0),
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um"})
    out = tmp_path / "ij_out.tif"
    assert main(["denoise", str(ij), "--model", str(model_file), "-o", str(out)]) == 0
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
        assert tif.imagej_metadata["spacing"] == 0.5 and tif.imagej_metadata["unit"] == "um"
        assert tif.pages[0].resolution == (4.0, 4.0)

    ome = tmp_path / "cells.ome.tif"
    tifffile.imwrite(ome, noisy((2, 64, 64)), ome=True,
                     metadata={"axes": "TYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.3,
                               "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"})
    for out in (denoise_file(ome, model_file, tmp_path / "api.ome.tif"),
                _cli_run(ome, tmp_path / "run.ome.tif")):
        with tifffile.TiffFile(out) as tif:
            assert tif.is_ome and tif.series[0].axes == "TYX"
            pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert (pixels["PhysicalSizeX"], pixels["PhysicalSizeY"]) == (0.2, 0.3)
        assert pixels["PhysicalSizeXUnit"] == "µm"

    as_ome = denoise_file(ij, model_file, tmp_path / "from_ij.ome.tif")  # ImageJ to OME
    with tifffile.TiffFile(as_ome) as tif:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
    assert (pixels["PhysicalSizeX"], pixels["PhysicalSizeZ"]) == (0.25, 0.5)
    assert pixels["PhysicalSizeXUnit"] == "µm"

    plain = tmp_path / "res.tif"  # resolution tags only, in centimetres
    tifffile.imwrite(plain, noisy((64, 64)), resolution=(100.0, 200.0),
                     resolutionunit="CENTIMETER")
    with tifffile.TiffFile(denoise_file(plain, model_file, tmp_path / "res_out.tif")) as tif:
        assert tif.pages[0].resolution == (100.0, 200.0)
        assert tif.pages[0].resolutionunit == 3


def _cli_run(src: Path, out: Path) -> Path:
    assert main(["run", str(src), "-o", str(out), "--sigma", "20", *FAST]) == 0
    return out


# --- 8. RGB PNG silently becomes greyscale ---------------------------------------------------

def test_rgb_png_is_denoised_per_channel_and_rgba_refused(tmp_path, model_file, capsys):
    rgb = np.stack([noisy((64, 64), s, np.uint8) for s in range(3)], axis=-1)
    rgb[..., 2] //= 3  # channels differ: a greyscale conversion would show
    src = tmp_path / "colour.png"
    Image.fromarray(rgb, "RGB").save(src)
    assert open_lazy(src)[1] == "YXS"
    out = tmp_path / "out.tif"
    assert main(["denoise", str(src), "--model", str(model_file), "-o", str(out)]) == 0
    result = tifffile.imread(out)
    assert result.shape == (3, 64, 64)
    assert result[2].mean() < result[0].mean() / 2

    deep = tmp_path / "rgb16.png"  # Pillow reads 16-bit colour as 8 bits: refused
    png16(deep, np.stack([noisy((16, 16), s) * 200 for s in range(3)], axis=-1))
    assert main(["denoise", str(deep), "--model", str(model_file), "-o",
                 str(tmp_path / "d.tif")]) == 2
    assert "16-bit colour PNG" in error_line(capsys)

    rgba = tmp_path / "alpha.png"
    Image.fromarray(np.dstack([rgb, np.full((64, 64), 255, np.uint8)]), "RGBA").save(rgba)
    assert main(["denoise", str(rgba), "--model", str(model_file), "-o",
                 str(tmp_path / "a.tif")]) == 2
    assert "alpha" in error_line(capsys)
    assert not (tmp_path / "a.tif").exists()


def png16(path: Path, rgb: np.ndarray) -> None:
    """Write a 16-bit RGB PNG (Pillow cannot)."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# --- 14. npe2 commands do no type checking or conversion ------------------------------------

def test_npe2_commands_check_and_convert_their_arguments(tmp_path, model_file):
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, noisy((64, 64)))
    ok = {"inputs": str(src), "model": str(model_file), "output": str(tmp_path / "o")}
    bad = [({"inputs": 3}, "inputs must be a path"), ({"inputs": None}, "inputs is required"),
           ({"inputs": []}, "inputs must be a path"), ({"model": 3}, "model must be"),
           ({"output": None}, "output is required"), ({"workers": "two"}, "workers must be"),
           ({"tile": "big"}, "tile must be an integer"), ({"colour": 1}, "unknown parameter"),
           ({"overwrite": "maybe"}, "overwrite must be True or False")]
    for change, message in bad:
        with pytest.raises(Noise2ScoreError, match=message):
            npe2_denoise(**{**ok, **change})
    with pytest.raises(Noise2ScoreError, match="missing a required argument: 'model'"):
        npe2_denoise(inputs=str(src), output=str(tmp_path / "o"))
    summary = npe2_denoise(**ok, sigma="20", tile="64", workers="1")  # converted
    assert summary["done"] and not summary["failed"]

    with pytest.raises(Noise2ScoreError) as info:  # worded for parameters, not --options
        npe2_train(str(src), str(tmp_path / "m.n2s"), noise="gaussian")
    assert "the sigma parameter" in str(info.value) and "--" not in str(info.value)
    with pytest.raises(Noise2ScoreError, match="a folder of that name"):
        npe2_train(str(src), str(tmp_path), sigma=20, max_steps=1)
    with pytest.raises(Noise2ScoreError, match="max_seconds must be a number"):
        npe2_train(str(src), str(tmp_path / "m.n2s"), sigma=20, max_seconds="soon")
    model = npe2_train(str(src), str(tmp_path / "m.n2s"), sigma="20", max_seconds="30",
                       max_steps="2", width="4", depth="1", patch_size="32",
                       batch_size="2", device="cpu")
    assert Path(model).is_file()
    with pytest.raises(Noise2ScoreError, match="axes must be a string"):
        npe2_estimate(str(src), axes=2)


def test_npe2_boundary_through_the_plugin_manager(tmp_path):
    """The same checks when called the npe2 way (commands.execute with kwargs)."""
    code = (
        "from npe2 import PluginManager\n"
        "from napari_noise2score.core.errors import Noise2ScoreError\n"
        "pm = PluginManager.instance(); pm.discover()\n"
        "try:\n"
        "    pm.commands.execute('napari-noise2score.denoise', kwargs={'inputs': 1,"
        " 'model': 'm.n2s', 'output': 'out'})\n"
        "except Noise2ScoreError as exc:\n"
        "    print('ERROR', exc)\n"
    )
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert "ERROR napari-noise2score.denoise: inputs must be a path" in proc.stdout, proc.stderr


# --- issue 13: --dtype same|float32 ----------------------------------------------------------

def test_dtype_same_gives_the_input_integer_type(tmp_path, model_file):
    data = noisy((2, 64, 64))
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, data)
    out = tmp_path / "same.tif"
    assert main(["denoise", str(src), "--model", str(model_file), "-o", str(out),
                 "--dtype", "same"]) == 0
    same = tifffile.imread(out)
    assert same.dtype == np.uint16
    floats = denoise(data, model_file, axes="TYX")
    assert floats.dtype == np.float32
    expected = np.clip(np.rint(floats), 0, 65535).astype(np.uint16)
    assert np.array_equal(same, expected)
    assert np.array_equal(denoise(data, model_file, axes="TYX", dtype="same"), expected)
    api = denoise_file(src, model_file, tmp_path / "api.tif", dtype="same")
    assert tifffile.imread(api).dtype == np.uint16
    summary = npe2_denoise(str(src), str(model_file), str(tmp_path / "npe2.tif"), dtype="same")
    assert tifffile.imread(summary["done"][0]).dtype == np.uint16
    assert tifffile.imread(denoise_file(src, model_file, tmp_path / "f.tif")).dtype == np.float32
    with pytest.raises(Noise2ScoreError, match="dtype must be one of float32, same"):
        denoise(data, model_file, dtype="int8")
