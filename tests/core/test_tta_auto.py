"""Test-time augmentation by size: the 8-fold average for small inputs, one pass for large
ones (the default), either forced; tiled output still equals whole-plane output."""

import numpy as np
import pytest
import tifffile
import torch

from napari_noise2score.cli import main
from napari_noise2score.core import inference
from napari_noise2score.core.config import TrainConfig
from napari_noise2score.core.inference import denoise_array, resolve_tta
from napari_noise2score.core.model import Noise2ScoreModel
from napari_noise2score.core.tiling import TiledDenoiser
from napari_noise2score.core.training import build_network


@pytest.fixture(scope="module")
def model() -> Noise2ScoreModel:
    cfg = TrainConfig(noise="gaussian", sigma=20.0, width=8, depth=2, unshuffle=2,
                      max_steps=1, device="cpu")
    torch.manual_seed(0)
    net = build_network(cfg).eval()
    with torch.no_grad():  # a last layer that is not zero: the averaging must matter
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return Noise2ScoreModel(cfg, net, scale=255.0, final_sigma_a=0.03)


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.random((2, 80, 72)) * 200).astype(np.float32)


def test_rule():
    limit = inference.TTA_AUTO_PIXELS
    assert resolve_tta(None, limit) and not resolve_tta(None, limit + 1)
    assert resolve_tta(True, 10 * limit) and not resolve_tta(False, 1)
    assert TrainConfig().tta is None
    # a 2048 x 2048 plane gets one pass by default, a 512 x 512 image the average
    assert not resolve_tta(None, 2048 * 2048) and resolve_tta(None, 512 * 512)


def test_auto_follows_the_input_size(model, stack, monkeypatch):
    best = denoise_array(model.with_options(tta=True), stack)
    fast = denoise_array(model.with_options(tta=False), stack)
    assert not np.allclose(best, fast, atol=1e-4)
    np.testing.assert_array_equal(denoise_array(model, stack), best)
    monkeypatch.setattr(inference, "TTA_AUTO_PIXELS", stack.size - 1)
    # above the size, auto drops the Wiener step as well as the average
    np.testing.assert_array_equal(denoise_array(model, stack),
                                  denoise_array(model.with_options(tta=False, wiener=False),
                                                stack))


@pytest.mark.parametrize("tta", [None, True, False])
def test_tiled_equals_whole_plane_for_every_setting(model, stack, tta):
    m = model if tta is None else model.with_options(tta=tta)
    whole = denoise_array(m, stack)
    tiler = TiledDenoiser(m, stack.shape, "ZYX", tile=32)
    assert len(tiler.grid) > 1
    tiled = np.stack(list(tiler.iter_planes(stack)))
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_cli_says_which_averaging_it_used(model, tmp_path, capsys, monkeypatch):
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, (np.random.default_rng(0).random((64, 64)) * 200).astype(np.uint8))
    model.save(tmp_path / "m.n2s")
    args = ["denoise", str(src), "--model", str(tmp_path / "m.n2s")]
    assert main([*args, "-o", str(tmp_path / "a.tif")]) == 0
    assert "8-fold average over flips and turns (auto" in capsys.readouterr().err
    monkeypatch.setattr(inference, "TTA_AUTO_PIXELS", 100)
    assert main([*args, "-o", str(tmp_path / "b.tif")]) == 0
    assert "one pass per tile (auto" in capsys.readouterr().err
    assert main([*args, "-o", str(tmp_path / "c.tif"), "--tta"]) == 0
    assert "8-fold average over flips and turns (the model's or the given" in \
        capsys.readouterr().err
