"""Structure: one tiling path (TiledDenoiser under denoise_array), one plane sampler, one
laziness test."""

from __future__ import annotations

import dask.array as da
import numpy as np

from helpers import tiny_model
from napari_noise2score.core.inference import denoise_array
from napari_noise2score.core.layout import is_lazy, sample_windows
from napari_noise2score.core.tiling import TiledDenoiser


def test_denoise_array_is_the_tiled_denoiser_with_its_defaults():
    model = tiny_model()
    data = np.random.default_rng(0).integers(0, 256, (2, 70, 90)).astype(np.uint16)
    calls = []
    out = denoise_array(model, data, "ZYX", tile=32, progress=lambda *a: calls.append(a))
    tiler = TiledDenoiser(model, data.shape, "ZYX", tile=32)
    np.testing.assert_array_equal(out, np.stack(list(tiler.iter_planes(data))))
    assert calls[-1] == (tiler.n_tiles, tiler.n_tiles) and len(calls) == tiler.n_tiles
    whole = denoise_array(model, data, "ZYX", tile=4096, overlap=0)
    np.testing.assert_allclose(out, whole, rtol=0, atol=1e-4 * np.abs(whole).max())


def test_one_sampler_spreads_or_strides_and_crops_at_the_centre():
    shapes = [(10, 20)] * 9
    assert [w[0] for w in sample_windows(shapes, 3)] == [0, 4, 8]
    assert [w[0] for w in sample_windows(shapes, 4, spread=False)] == [0, 2, 4, 6]
    (_, ys, xs), = sample_windows([(10, 20)], 5, pixels=50)
    assert (ys, xs) == (slice(1, 8), slice(6, 13))


def test_one_laziness_test():
    assert is_lazy(da.zeros((4, 4))) and not is_lazy(np.zeros((4, 4)))
