"""bioimage.io packages: export a trained model, validate it with bioimageio.spec, run it
with bioimageio.core, import it back; corrupt, altered and foreign packages are refused.
Default training's routes too: the Anscombe route for Poisson-type noise and the
pretrained prior's noise-conditioned network for Gaussian noise."""

import sys
import zipfile

import numpy as np
import pytest
import tifffile

pytest.importorskip("bioimageio.core")
pytest.importorskip("bioimageio.spec")

from helpers import NOISES, perturbed_model, smooth_image  # noqa: E402
from napari_noise2score.api import denoise, export_bioimageio, load_model, train  # noqa: E402
from napari_noise2score.cli import main  # noqa: E402
from napari_noise2score.core.errors import ExportError, ModelFileError  # noqa: E402
from napari_noise2score.core.noise import NoiseParams, simulate  # noqa: E402
from napari_noise2score.export.bioimageio import halo_px, require_bioimageio  # noqa: E402

TINY = dict(width=8, depth=2, max_steps=60, max_seconds=None, patch_size=32, batch_size=4,
            device="cpu", tta=False, transform="none")  # the count route; ROUTES: the others
#: The models default training gives (name: noise, clean image's range, training options).
ROUTES = {
    "gaussian-prior": (NoiseParams("gaussian", sigma=15.0), (200.0, 20.0),
                       dict(noise="gaussian", sigma=15.0, init="pretrained", max_steps=10,
                            max_seconds=None, patch_size=32, batch_size=4, device="cpu",
                            tta=False)),
    "poisson-gaussian-anscombe": (NoiseParams("poisson-gaussian", gain=2.0, sigma=3.0),
                                  (300.0, 20.0), dict(noise="poisson-gaussian", gain=2.0,
                                                      sigma=3.0, offset=10.0,
                                                      **{**TINY, "transform": None})),
    "poisson-anscombe": (NoiseParams("poisson", gain=2.0), (300.0, 20.0),
                         dict(noise="poisson", gain=2.0, **{**TINY, "transform": None})),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A Poisson-Gaussian model trained a few steps, its training image and its package."""
    clean = np.stack([smooth_image(80, s) for s in range(2)]) * 300 + 20
    noisy = simulate(clean, NoiseParams("poisson-gaussian", gain=2.0, sigma=3.0), seed=4)
    noisy = noisy.astype(np.float32)
    model = train(noisy, noise="poisson-gaussian", gain=2.0, sigma=3.0, offset=10.0, **TINY)
    folder = tmp_path_factory.mktemp("zoo")
    package = export_bioimageio(model, folder / "n2s.zip", image=noisy, authors=["A. Tester"],
                                training_data="two synthetic 80 x 80 planes")
    return model, noisy, package


def other_image() -> np.ndarray:
    clean = smooth_image(72, seed=9) * 300 + 20
    noisy = simulate(clean, NoiseParams("poisson-gaussian", gain=2.0, sigma=3.0), seed=5)
    return noisy[:60, :68].astype(np.float32)


@pytest.fixture(scope="module", params=list(ROUTES))
def route(request, tmp_path_factory):
    """A model trained a few steps on one of default training's routes, a test image with
    its noise, and the model's package."""
    noise, (peak, floor), options = ROUTES[request.param]
    offset = options.get("offset", 0.0)
    clean = np.stack([smooth_image(80, s) for s in range(2)]) * peak + floor
    noisy = (simulate(clean, noise, seed=4) + offset).astype(np.float32)
    model = train(noisy, **options)
    image = (simulate(smooth_image(72, seed=9) * peak + floor, noise, seed=5) + offset)
    package = export_bioimageio(model, tmp_path_factory.mktemp("route") / "m.zip",
                                image=noisy)
    return request.param, model, image[:60, :68].astype(np.float32), package


def test_default_training_routes_are_what_is_exported(route):
    name, model, _, _ = route
    if name == "gaussian-prior":
        assert model.conditioned and model.config.init == "pretrained"
        assert model.config.transform == "none"
    else:
        assert model.config.anscombe and not model.conditioned


def test_route_package_passes_bioimageio_validation(route):
    from bioimageio.core import test_model
    from bioimageio.spec import load_description
    from bioimageio.spec.model.v0_5 import ModelDescr

    name, model, _, package = route
    descr = load_description(package, perform_io_checks=True)
    assert isinstance(descr, ModelDescr), descr.validation_summary.format()
    assert descr.validation_summary.status in ("passed", "valid-format")
    readme = zipfile.ZipFile(package).read("README.md").decode()
    assert ("noise-conditioned" in readme) == (name == "gaussian-prior")
    assert ("Anscombe transform" in readme) == model.config.anscombe
    for weights in ("torchscript", "pytorch_state_dict"):  # the second: ExportedDenoiser
        summary = test_model(package, weight_format=weights, devices=["cpu"])
        assert summary.status == "passed", summary.format()


def test_route_prediction_in_bioimageio_core_equals_plugin_denoise(route):
    from bioimageio.core import Tensor, predict

    _, model, image, package = route
    tensor = Tensor.from_numpy(image[None, None], dims=("batch", "channel", "y", "x"))
    got = predict(model=str(package), inputs={"raw": tensor}).members["denoised"]
    got = got.data.to_numpy()[0, 0]
    expected = denoise(image, model.with_options(tta=False, wiener=False))
    assert np.abs(expected - image).max() > 1.0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_route_package_reimports_as_the_same_model(route):
    _, model, image, package = route
    again = load_model(package, "cpu")
    assert again.config == model.config and again.scale == model.scale
    assert again.final_sigma_a == model.final_sigma_a
    if model.conditioned:
        assert float(again.net.tau) == float(model.net.tau)
    np.testing.assert_array_equal(denoise(image, again.with_options(tta=False, wiener=False)),
                                  denoise(image, model.with_options(tta=False, wiener=False)))


def test_cli_exports_a_default_trained_model_file(route, tmp_path, capsys):
    _, model, image, _ = route
    model_file, image_file = tmp_path / "m.n2s", tmp_path / "train.tif"
    model.save(model_file)
    tifffile.imwrite(image_file, image)
    package = tmp_path / "cli.zip"
    assert main(["export", str(model_file), "-o", str(package), "--image", str(image_file)]) \
        == 0
    assert "wrote" in capsys.readouterr().out
    with zipfile.ZipFile(package) as archive:
        with archive.open("test_input.npy") as file:
            test_input = np.load(file)[0, 0]
        with archive.open("test_output.npy") as file:
            test_output = np.load(file)[0, 0]
    plain = model.with_options(tta=False, wiener=False)  # the module has no Wiener step
    np.testing.assert_allclose(test_output, denoise(test_input, plain), rtol=1e-5, atol=1e-3)


def test_route_package_without_an_image_uses_a_synthetic_one_at_the_models_level(route,
                                                                                  tmp_path):
    """On the Anscombe route the scale is of transformed values: the synthetic test image
    is still at the model's input intensities."""
    _, model, image, _ = route
    package = export_bioimageio(model, tmp_path / "s.zip")
    with zipfile.ZipFile(package) as archive, archive.open("test_input.npy") as file:
        test_input = np.load(file)
    assert 0.2 < float(test_input.max()) / float(image.max()) < 2.0


def test_package_passes_bioimageio_validation(trained):
    from bioimageio.core import test_model
    from bioimageio.spec import load_description
    from bioimageio.spec.model.v0_5 import ModelDescr

    _, _, package = trained
    descr = load_description(package, perform_io_checks=True)
    assert isinstance(descr, ModelDescr), descr.validation_summary.format()
    assert descr.validation_summary.status in ("passed", "valid-format")
    assert {"torchscript", "pytorch_state_dict"} <= {
        name for name, entry in descr.weights if entry is not None}
    assert "Kim" in descr.cite[0].text and str(descr.cite[0].doi).endswith("2106.07009")
    assert descr.inputs[0].data.type == "float32" and len(descr.inputs[0].axes) == 4
    names = set(zipfile.ZipFile(package).namelist())
    assert {"cover.png", "README.md", "model.n2s", "test_input.npy"} <= names
    readme = zipfile.ZipFile(package).read("README.md").decode()
    assert "poisson-gaussian" in readme and "synthetic 80" in readme
    assert "gain zeta (intensity of one photon count): 2 (input intensity units)" in readme
    assert f"halo of at least {halo_px(trained[0])} pixels" in readme
    summary = test_model(package, weight_format="torchscript", devices=["cpu"])
    assert summary.status == "passed", summary.format()


def test_bioimageio_core_prediction_equals_plugin_denoise(trained):
    from bioimageio.core import Tensor, predict

    model, _, package = trained
    image = other_image()
    tensor = Tensor.from_numpy(image[None, None], dims=("batch", "channel", "y", "x"))
    sample = predict(model=str(package), inputs={"raw": tensor})
    got = sample.members["denoised"].data.to_numpy()[0, 0]
    expected = denoise(image, model.with_options(tta=False, wiener=False))
    assert np.abs(expected - image).max() > 1.0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("noise", NOISES, ids=lambda n: n.get("mixed_mode", n["noise"]))
def test_every_noise_model_runs_in_bioimageio_core_as_in_the_plugin(noise, tmp_path):
    from bioimageio.core import Tensor, predict

    model = perturbed_model(decorrelate=2, tta=False, **noise)
    image = (100 + 50 * np.random.default_rng(6).random((2, 45, 50))).astype(np.float32)
    package = export_bioimageio(model, tmp_path / "m.zip", image=image)
    tensor = Tensor.from_numpy(image[:, None], dims=("batch", "channel", "y", "x"))
    got = predict(model=str(package), inputs={"raw": tensor}).members["denoised"]
    np.testing.assert_allclose(got.data.to_numpy()[:, 0], denoise(image, model),
                               rtol=1e-5, atol=1e-3)


def test_reimported_package_gives_the_same_result(trained):
    model, _, package = trained
    again = load_model(package, "cpu")
    assert again.config == model.config and again.scale == model.scale
    image = other_image()
    np.testing.assert_array_equal(denoise(image, again), denoise(image, model))


def test_cli_exports_and_denoises_with_a_package(trained, tmp_path, capsys):
    model, noisy, _ = trained
    model_file, image_file = tmp_path / "m.n2s", tmp_path / "train.tif"
    model.save(model_file)
    tifffile.imwrite(image_file, noisy)
    package = tmp_path / "cli.zip"
    assert main(["export", str(model_file), "-o", str(package), "--image", str(image_file),
                 "--name", "CLI model", "--authors", "A; B"]) == 0
    assert "wrote" in capsys.readouterr().out and package.is_file()
    out = tmp_path / "out.tif"
    plane = tmp_path / "plane.tif"
    tifffile.imwrite(plane, other_image())
    assert main(["denoise", str(plane), "--model", str(package), "-o", str(out)]) == 0
    np.testing.assert_allclose(tifffile.imread(out), denoise(other_image(), model), atol=1e-4)


def _refused(capsys, tmp_path, package) -> str:
    plane = tmp_path / "plane.tif"
    tifffile.imwrite(plane, other_image())
    code = main(["denoise", str(plane), "--model", str(package), "-o", str(tmp_path / "o.tif")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o.tif").exists()
    return err


def test_corrupted_zip_is_refused_in_one_line(trained, tmp_path, capsys):
    bad = tmp_path / "bad.zip"
    data = trained[2].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    assert "not a bioimage.io model package" in _refused(capsys, tmp_path, bad)


def _rewrite(source, target, change) -> None:
    """Copy a zip, passing each member's bytes through ``change(name, data)``."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, change(name, src.read(name)))


def test_altered_model_file_is_refused(trained, tmp_path, capsys):
    from napari_noise2score.core.model import Noise2ScoreModel

    other = tmp_path / "other.n2s"
    model = trained[0]
    Noise2ScoreModel(model.config, model.net, model.scale * 2, model.final_sigma_a).save(other)
    altered = tmp_path / "altered.zip"
    _rewrite(trained[2], altered,
             lambda name, data: other.read_bytes() if name == "model.n2s" else data)
    err = _refused(capsys, tmp_path, altered)
    assert "not a valid bioimage.io model package" in err and "sha256" in err.lower()


def test_foreign_package_is_refused(trained, tmp_path, capsys):
    import yaml

    def drop_ours(name, data):
        if name != "rdf.yaml":
            return data
        rdf = yaml.safe_load(data)
        rdf["config"].pop("napari_noise2score")
        return yaml.safe_dump(rdf).encode()

    foreign = tmp_path / "foreign.zip"
    _rewrite(trained[2], foreign, drop_ours)
    assert "not one exported by napari-noise2score" in _refused(capsys, tmp_path, foreign)


def test_missing_packages_give_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "bioimageio.core", None)
    with pytest.raises(ExportError, match=r"pip install 'napari-noise2score\[bioimageio\]'"):
        require_bioimageio()
    with zipfile.ZipFile(tmp_path / "y.zip", "w") as z:
        z.writestr("rdf.yaml", "x")
    with pytest.raises(ModelFileError, match=r"napari-noise2score\[bioimageio\]"):
        load_model(tmp_path / "y.zip")


def test_export_without_an_image_uses_a_synthetic_one(trained, tmp_path, capsys):
    model = trained[0]
    model_file = tmp_path / "m.n2s"
    model.save(model_file)
    assert main(["export", str(model_file), "-o", str(tmp_path / "s.zip")]) == 0
    assert "synthetic sample" in capsys.readouterr().out
    for output in (tmp_path / "s.n2s", tmp_path / "s.zip" / "x.zip"):  # not a .zip; a file
        assert main(["export", str(model_file), "-o", str(output)]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["export", str(tmp_path / "s.zip"), "-o", str(tmp_path / "s.zip")]) == 2
    assert "package" in capsys.readouterr().err
    with pytest.raises(ExportError, match="at least 8 x 8 pixels"):
        export_bioimageio(model, tmp_path / "small.zip", image=np.ones((4, 30), np.float32))


def test_widgets_export_and_load_a_package(trained, make_napari_viewer, tmp_path):
    from napari_noise2score.widgets import DenoiseWidget, TrainWidget

    model, noisy, _ = trained
    viewer = make_napari_viewer()
    viewer.add_image(noisy, name="training")
    _, train_w = viewer.window.add_plugin_dock_widget("napari-noise2score", "Train")
    _, denoise_w = viewer.window.add_plugin_dock_widget("napari-noise2score", "Denoise")
    assert isinstance(train_w, TrainWidget) and isinstance(denoise_w, DenoiseWidget)
    train_w.store.set(model, "trained on training")
    train_w._training_layer = "training"
    package = tmp_path / "widget.zip"
    train_w.export_model(package)
    assert package.is_file() and train_w.status.text() == f"exported {package}"
    readme = zipfile.ZipFile(package).read("README.md").decode()
    assert "napari layer 'training'" in readme
    denoise_w.load_model(package)
    assert train_w.store.model is not model and train_w.store.model.config == model.config
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK not really")
    train_w.load_model(bad)
    assert train_w.last_error.endswith("(not a zip file)")


def test_serializer_fix_is_idempotent_and_leaves_no_buggy_call():
    import inspect

    from napari_noise2score.export import _compat

    require_bioimageio()
    _compat.patch_file_serializer()  # a second time: nothing changes
    for function in _compat._targets():
        if function.__code__.co_filename != _compat._FIXED:
            assert "handler(value,info" not in "".join(inspect.getsource(function).split())
