"""Volumes larger than memory: lazy reading, tiled inference without seams, streamed output."""

import os

import dask.array as da
import numpy as np
import pytest
import tifffile
import torch

from helpers import smooth_image
from napari_noise2score.api import denoise, denoise_file, open_lazy
from napari_noise2score.cli import main
from napari_noise2score.core.config import TrainConfig
from napari_noise2score.core.errors import (
    AxesError,
    Cancelled,
    InputFileError,
    Noise2ScoreError,
    OutputError,
)
from napari_noise2score.core.inference import default_overlap, denoise_array, receptive_radius
from napari_noise2score.core.model import Noise2ScoreModel, build_network
from napari_noise2score.core.network import ScoreUNet
from napari_noise2score.core.tiling import TiledDenoiser, choose_tile
from napari_noise2score.core.wiener import REACH as WIENER_REACH
from napari_noise2score.io.chunked_writer import check_output
from napari_noise2score.io.lazy import training_planes


@pytest.fixture(scope="module")
def model() -> Noise2ScoreModel:
    """A small network with random (non-zero) output: tiling errors would show."""
    cfg = TrainConfig(noise="gaussian", sigma=20.0, width=8, depth=2, unshuffle=2, max_steps=1)
    torch.manual_seed(0)
    net = build_network(cfg)
    torch.nn.init.normal_(net.tail.weight, std=0.05)
    return Noise2ScoreModel(cfg, net.eval(), scale=255.0, final_sigma_a=0.03)


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.n2s"
    model.save(path)
    return path


def noisy(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint16)


def no_leftovers(folder) -> bool:
    return not [p for p in os.listdir(folder) if p.endswith(".tmp")]


@pytest.mark.parametrize("size", [(77, 131), (157, 203), (33, 45)])
@pytest.mark.parametrize("tile, overlap", [(16, None), (40, None), (64, 64), (24, 72)])
def test_tiled_equals_whole_image(model, size, tile, overlap):
    if tile < 32:  # tiny tiles: the network's tiling alone (the step's halo would make each
        model = model.with_options(wiener=False)  # tile 10-50x its size: minutes here)
    elif overlap is not None:  # a given halo must cover the Wiener step's reach as well
        overlap += WIENER_REACH
    data = noisy((2, *size))
    whole = denoise_array(model, data, "TYX", tile=4096, overlap=0)
    tiler = TiledDenoiser(model, data.shape, "TYX", tile=tile, overlap=overlap)
    planes = np.stack(list(tiler.iter_planes(da.from_array(data, chunks=(1, 30, 30)))))
    np.testing.assert_allclose(planes, whole, rtol=0, atol=1e-4 * np.abs(whole).max())
    lazy = tiler.as_dask(data).compute()
    np.testing.assert_allclose(lazy, whole, rtol=0, atol=1e-4 * np.abs(whole).max())


def test_a_halo_short_of_the_receptive_field_leaves_seams(model):
    data = noisy((1, 128, 128))
    whole = denoise_array(model, data, "TYX", tile=4096, overlap=0)
    tiler = TiledDenoiser(model, data.shape, "TYX", tile=32, overlap=0)
    seams = np.stack(list(tiler.iter_planes(data)))
    assert np.abs(seams - whole).max() > 5e-4 * np.abs(whole).max()  # 5x the tolerance


@pytest.mark.parametrize("width, depth, unshuffle", [(8, 2, 2), (8, 3, 1)])
def test_receptive_radius_bounds_a_measured_perturbation(width, depth, unshuffle):
    torch.manual_seed(1)
    net = ScoreUNet(width, depth, unshuffle).double().eval()
    torch.nn.init.normal_(net.tail.weight, std=0.1)
    n, c = 160, 83
    x = torch.rand(1, 1, n, n, dtype=torch.float64)
    bumped = x.clone()
    bumped[0, 0, c, c] += 1.0
    with torch.no_grad():
        diff = (net(bumped) - net(x)).abs()[0, 0].numpy()
    ys, xs = np.nonzero(diff)
    reach = max(np.abs(ys - c).max(), np.abs(xs - c).max())
    radius = receptive_radius(net)
    assert reach <= radius < 1.3 * reach
    assert default_overlap(net) % net.multiple == 0 and default_overlap(net) >= radius


@pytest.mark.parametrize("axes, shape", [
    ("YX", (70, 90)), ("TYX", (3, 50, 60)), ("ZYX", (2, 50, 60)), ("CZYX", (2, 2, 40, 50)),
    ("TZYX", (2, 3, 40, 50)), ("YXC", (40, 50, 2)), ("XY", (50, 40)),
])
def test_nd_layouts_match_in_memory_denoising(model, axes, shape):
    data = noisy(shape, seed=3)
    whole = denoise_array(model, data, axes, tile=4096)
    lazy = denoise(da.from_array(data), model, axes=axes, tile=32)
    assert isinstance(lazy, da.Array) and lazy.shape == data.shape
    np.testing.assert_allclose(lazy.compute(), whole, atol=1e-4 * np.abs(whole).max())


def test_multipage_tiff_round_trip_is_lazy_and_exact(model, model_file, tmp_path):
    data = noisy((3, 2, 61, 75))
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, data, metadata={"axes": "TZYX"})
    lazy, axes = open_lazy(src)
    assert isinstance(lazy, da.Array) and axes == "TZYX" and lazy.chunksize[:2] == (1, 1)
    np.testing.assert_array_equal(lazy.compute(), data)
    expected = denoise_array(model, data, axes, tile=4096)
    seen = []
    out = denoise_file(src, model_file, tmp_path / "out.tif", tile=32,
                       progress=lambda d, t: seen.append((d, t)))
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "TZYX" and len(tif.pages) == 6
        result = tif.asarray()
    np.testing.assert_allclose(result, expected, atol=1e-4 * np.abs(expected).max())
    assert seen[-1] == (6 * 6, 6 * 6) and len(seen) == 36  # 6 planes of 2 x 3 tiles
    zarr_out = denoise_file(src, model, tmp_path / "out.zarr", tile=48)
    back, zaxes = open_lazy(zarr_out)
    assert zaxes == "TZYX"
    np.testing.assert_allclose(back.compute(), expected, atol=1e-4 * np.abs(expected).max())
    assert no_leftovers(tmp_path)


def test_ome_tiff_and_zarr_inputs(tmp_path):
    import zarr

    data = noisy((2, 3, 40, 50))
    tifffile.imwrite(tmp_path / "a.ome.tif", data, ome=True, metadata={"axes": "CZYX"})
    arr, axes = open_lazy(tmp_path / "a.ome.tif")
    assert axes == "CZYX"
    np.testing.assert_array_equal(arr, data)
    z = zarr.create_array(str(tmp_path / "b.zarr"), shape=data.shape, chunks=(1, 1, 20, 20),
                          dtype=data.dtype, dimension_names=["t", "z", "y", "x"])
    z[:] = data
    arr, axes = open_lazy(tmp_path / "b.zarr")
    assert axes == "TZYX" and arr.chunksize == (1, 1, 20, 20)
    np.testing.assert_array_equal(arr, data)


def test_stop_midway_leaves_no_output(model, tmp_path):
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, noisy((4, 64, 64)), metadata={"axes": "TYX"})
    calls = iter(range(1000))
    for name in ("out.tif", "out.zarr"):
        with pytest.raises(Cancelled):
            denoise_file(src, model, tmp_path / name, tile=32, stop=lambda: next(calls) >= 5)
        assert not (tmp_path / name).exists()
    previous = tmp_path / "kept.tif"
    previous.write_bytes(b"old result")
    with pytest.raises(Cancelled):
        denoise_file(src, model, previous, tile=32, stop=lambda: True)
    assert previous.read_bytes() == b"old result"
    assert no_leftovers(tmp_path)


def test_bad_inputs_raise_clear_errors(model, tmp_path):
    good = noisy((3, 40, 50))
    src = tmp_path / "s.tif"
    tifffile.imwrite(src, good, metadata={"axes": "ZYX"})
    raw = src.read_bytes()
    (tmp_path / "cut.tif").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputFileError, match="truncated"):
        open_lazy(tmp_path / "cut.tif")
    (tmp_path / "text.tif").write_text("not a tiff at all")
    with pytest.raises(InputFileError, match="not a valid TIFF"):
        open_lazy(tmp_path / "text.tif")
    tifffile.imwrite(tmp_path / "q.tif", noisy((2, 2, 40, 50)))  # no axes in the metadata
    with pytest.raises(AxesError, match="axes=TZYX"):
        open_lazy(tmp_path / "q.tif")
    assert open_lazy(tmp_path / "q.tif", axes="TZYX")[1] == "TZYX"
    with pytest.raises(AxesError):
        open_lazy(src, axes="TZYX")
    with pytest.raises(OutputError, match="overwrite its input"):
        denoise_file(src, model, src)
    with pytest.raises(OutputError, match="GiB free"):
        check_output(tmp_path / "huge.tif", 2**62)
    assert src.read_bytes() == raw
    assert issubclass(AxesError, Noise2ScoreError) and issubclass(OutputError, Noise2ScoreError)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_output_folder_is_refused(model, tmp_path):
    src = tmp_path / "s.tif"
    tifffile.imwrite(src, noisy((40, 50)))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="read-only"):
            denoise_file(src, model, locked / "out.tif")
    finally:
        locked.chmod(0o700)


def test_full_or_read_only_disk_while_writing_leaves_nothing(model, tmp_path, monkeypatch):
    import errno

    from napari_noise2score.io import atomic, chunked_writer

    src = tmp_path / "s.tif"
    tifffile.imwrite(src, noisy((3, 40, 50)), metadata={"axes": "ZYX"})
    real = chunked_writer._write_tiff

    def fills_the_disk(tmp, planes, shape, axes, *options):
        def two_then_full():
            for i, plane in enumerate(planes):
                if i == 2:
                    raise OSError(errno.ENOSPC, "No space left on device")
                yield plane
        real(tmp, two_then_full(), shape, axes, *options)

    monkeypatch.setattr(chunked_writer, "_write_tiff", fills_the_disk)
    with pytest.raises(OutputError, match="disk is full"):
        denoise_file(src, model, tmp_path / "out.tif", tile=32)
    assert not (tmp_path / "out.tif").exists() and no_leftovers(tmp_path)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    with pytest.raises(OutputError, match="read-only"):
        denoise_file(src, model, tmp_path / "out.tif", tile=32)
    assert main(["denoise", str(src), "--model", str(tmp_path / "none.n2s"),
                 "-o", str(tmp_path / "o.tif")]) == 2


def test_cli_streams_and_exits_2_on_bad_input(model_file, tmp_path, capsys):
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, noisy((2, 3, 40, 50)), metadata={"axes": "TZYX"})
    out = tmp_path / "o.zarr"
    assert main(["denoise", str(src), "--model", str(model_file), "-o", str(out),
                 "--tile", "32"]) == 0
    assert open_lazy(out)[0].shape == (2, 3, 40, 50)
    ambiguous = tmp_path / "amb.tif"
    tifffile.imwrite(ambiguous, noisy((2, 2, 40, 50)))
    assert main(["denoise", str(ambiguous), "--model", str(model_file),
                 "-o", str(tmp_path / "x.tif")]) == 2
    assert "--axes" in capsys.readouterr().err
    assert main(["denoise", str(src), "--model", str(model_file), "-o", str(src)]) == 2
    assert "overwrite its input" in capsys.readouterr().err
    assert not (tmp_path / "x.tif").exists() and no_leftovers(tmp_path)


def test_training_reads_a_bounded_sample(tmp_path):
    data = noisy((20, 3, 64, 80))
    planes = training_planes(da.from_array(data, chunks=(1, 1, 64, 80)), "TZYX",
                             max_bytes=5 * 64 * 80 * 4)
    assert planes.shape == (5, 64, 80) and planes.dtype == np.uint16
    np.testing.assert_array_equal(planes[0], data[0, 0])
    np.testing.assert_array_equal(planes[-1], data[-1, -1])
    crop = training_planes(data, "TZYX", max_bytes=32 * 32 * 4)
    assert crop.shape == (1, 32, 32)  # one plane's centre crop when a plane is too large
    np.testing.assert_array_equal(crop[0], data[0, 0, 16:48, 24:56])


def test_cli_train_and_run_on_a_stack(tmp_path):
    clean = np.stack([smooth_image(64, s) for s in range(3)]) * 200
    stack = (clean + np.random.default_rng(0).normal(0, 20, clean.shape)).clip(0, 255)
    src = tmp_path / "s.tif"
    tifffile.imwrite(src, stack.astype(np.uint8), metadata={"axes": "ZYX"})
    fast = ["--steps", "20", "--patch-size", "32", "--batch-size", "4", "--width", "8",
            "--depth", "2", "--device", "cpu", "--sigma", "20"]
    assert main(["run", str(src), "-o", str(tmp_path / "d.tif"), *fast,
                 "--save-model", str(tmp_path / "m.n2s")]) == 0
    result = tifffile.imread(tmp_path / "d.tif")
    assert result.shape == (3, 64, 64) and result.dtype == np.float32
    assert Noise2ScoreModel.load(tmp_path / "m.n2s").config.axes is None


def test_choose_tile_follows_memory():
    net = ScoreUNet(24, 3, 2)
    small, large = choose_tile(net, 128, 64 * 2**20), choose_tile(net, 128, 1024 * 2**20)
    assert small % net.multiple == 0 and large % net.multiple == 0
    assert 4 * net.multiple <= small < large <= 4096
    assert choose_tile(net, 128) >= 4 * net.multiple


def test_napari_reader_is_lazy_above_the_threshold(tmp_path, monkeypatch):
    from napari_noise2score._reader import napari_get_reader

    src = tmp_path / "s.tif"
    tifffile.imwrite(src, noisy((3, 40, 50)), metadata={"axes": "ZYX"})
    assert napari_get_reader(str(src)) is None  # small: napari's own reader
    monkeypatch.setenv("NAPARI_NOISE2SCORE_LAZY_MB", "0")
    reader = napari_get_reader(str(src))
    [(data, meta, kind)] = reader(str(src))
    assert isinstance(data, da.Array) and kind == "image" and meta["metadata"]["axes"] == "ZYX"


def test_lazy_layer_then_compute_and_save(model, model_file, tmp_path):
    from napari_noise2score._writer import denoised_layer, write_image

    data = noisy((2, 50, 60))
    layer, meta, kind = denoised_layer(data, model_file, axes="ZYX", tile=32)
    assert isinstance(layer, da.Array) and kind == "image"
    out = tmp_path / "saved.tif"
    assert write_image(str(out), layer, meta) == [str(out)]
    expected = denoise_array(model, data, "ZYX", tile=4096)
    np.testing.assert_allclose(tifffile.imread(out), expected, atol=1e-4 * np.abs(expected).max())
