"""The npe2 manifest validates, and its sample data opens in a real napari viewer."""

import numpy as np

from helpers import SRC

MANIFEST = SRC / "napari_noise2score" / "napari.yaml"


def test_manifest_validates():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()
    assert manifest.name == "napari-noise2score"
    assert manifest.contributions.sample_data[0].key == "synthetic_fluorescence"


def test_sample_data_opens_in_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-noise2score", "synthetic_fluorescence")
    names = [layer.name for layer in viewer.layers]
    assert names == ["noisy sample", "clean reference"]
    noisy, clean = viewer.layers["noisy sample"].data, viewer.layers["clean reference"].data
    assert noisy.shape == clean.shape and noisy.ndim == 3
    # Poisson-Gaussian noise: the residual variance grows with the signal
    resid = noisy - clean
    dim, bright = clean < np.percentile(clean, 50), clean > np.percentile(clean, 99)
    assert resid[bright].var() > 2 * resid[dim].var()
    assert not viewer.layers["clean reference"].visible


def test_package_import_is_light():
    import subprocess
    import sys

    code = "import napari_noise2score, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
