"""bioimage.io model packages: export a trained model, and import one this plugin exported.

A package holds the whole denoiser as one TorchScript module (``export.torchscript``), the
same module's state dict with its architecture (``ExportedDenoiser`` from this plugin), a
test input/output pair, a cover image, a README with the noise model and parameters, and
the original ``.n2s`` model file as an attachment: importing reads that file back, after
bioimageio.spec has validated the package (every file's SHA-256 included). Nothing here
downloads anything.
"""

from __future__ import annotations

import getpass
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from PIL import Image

from .._sample_data import clean_sample
from ..core.errors import ExportError, ModelFileError
from ..core.inference import MEAN_RADIUS, default_overlap, denoise_array
from ..core.model import Noise2ScoreModel, package_version
from ..core.noise import simulate
from ..core.stack import image_planes
from ..io.atomic import atomic_output
from ..io.outputs import check_location
from ._compat import patch_file_serializer
from .torchscript import TRUNCATE, build_denoiser, check_exportable, denoiser_spec

#: The key of this plugin's block in the package's ``config``.
CONFIG_KEY = "napari_noise2score"
MODEL_FILE = "model.n2s"
#: The test input is a centre crop of at most this many pixels on a side.
TEST_SIZE = 256
INSTALL_HINT = "pip install 'napari-noise2score[bioimageio]'"
NOISE2SCORE_CITATION = {
    "text": "Kim, K. & Ye, J. C. Noise2Score: Tweedie's Approach to Self-Supervised Image "
            "Denoising without Clean Images. NeurIPS 2021.",
    "doi": "10.48550/arXiv.2106.07009",
}


def require_bioimageio() -> None:
    """Raise ExportError (one line) when bioimageio.spec or bioimageio.core is missing."""
    try:
        import bioimageio.core  # noqa: F401
        import bioimageio.spec  # noqa: F401
    except ImportError:
        raise ExportError("bioimage.io packages need bioimageio.spec and bioimageio.core: "
                          f"{INSTALL_HINT}") from None
    patch_file_serializer()


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a bioimage.io package (by its suffix), not a .n2s model."""
    return Path(path).suffix.lower() == ".zip"


# ---- export -------------------------------------------------------------------------------
def make_test_plane(model: Noise2ScoreModel, image: np.ndarray | None) -> tuple[np.ndarray, str]:
    """A float32 2D plane for the test pair, and a sentence saying where it came from: the
    centre crop of the first plane of ``image`` (the training data, or an image like it),
    else the plugin's synthetic sample at the model's intensities with its noise simulated."""
    if image is not None:
        image = np.asarray(image)
        axes = model.config.axes if model.config.axes and \
            len(model.config.axes) == image.ndim else None
        plane = image_planes(image, axes)[0]
        source = f"the centre of the first plane of the given image (shape {image.shape})"
    else:
        clean = clean_sample((1, 128, 128))[0].astype(np.float64)
        clean = 0.5 * _input_scale(model) * clean / clean.max()
        plane = simulate(clean, model.noise_params(), seed=0) + model.config.offset
        source = ("the plugin's synthetic sample (no training image given) at half the "
                  "model's intensity scale, with the model's noise simulated on it")
    h, w = plane.shape
    y0, x0 = max(0, (h - TEST_SIZE) // 2), max(0, (w - TEST_SIZE) // 2)
    crop = np.ascontiguousarray(plane[y0:y0 + TEST_SIZE, x0:x0 + TEST_SIZE], np.float32)
    least = model.net.multiple
    if min(crop.shape) < least:
        raise ExportError(f"the test image must be at least {least} x {least} pixels (the "
                          f"network's multiple), not {h} x {w}")
    return crop, source


def _input_scale(model: Noise2ScoreModel) -> float:
    """The input intensity (above the offset) the network sees as 1.0: the scale, or on the
    Anscombe route the intensity whose transformed value is the scale."""
    cfg = model.config
    if not cfg.anscombe:
        return float(model.scale)
    from ..core.anscombe import gat_inverse

    return float(gat_inverse(np.array([model.scale]), cfg.gain, cfg.sigma or 0.0)[0])


def _cover(noisy: np.ndarray, denoised: np.ndarray, path: Path) -> None:
    """Noisy | denoised side by side (2:1), both with the noisy image's 1-99.8 % range."""
    lo, hi = np.percentile(noisy, [1, 99.8])
    scale = 255.0 / max(float(hi - lo), 1e-12)

    def grey(a: np.ndarray) -> np.ndarray:
        return np.clip((a - lo) * scale, 0, 255).astype(np.uint8)

    Image.fromarray(np.concatenate([grey(noisy), grey(denoised)], axis=1)).save(path)


def _readme(model: Noise2ScoreModel, name: str, description: str, data_text: str,
            test_source: str, tta: bool) -> str:
    from ..core.route import describe_route
    from .torchscript import network_tau

    cfg = model.config
    params = {k: getattr(cfg, k) for k in model.noise_params().needs}
    tau = network_tau(model)
    scaled = "Anscombe-transformed value" if cfg.anscombe else "input intensity"
    network = (f"- network: U-Net width {cfg.width}, depth {cfg.depth}, unshuffle "
               f"{cfg.unshuffle}, decorrelating stride {cfg.decorrelate or 1}")
    if tau is not None:
        network += (f"; noise-conditioned (the pretrained prior's network), queried at noise "
                    f"std tau = {tau:g} of the intensity scale")
    if cfg.anscombe:
        steps = ("the generalized Anscombe transform (with the gain, read noise and offset "
                 "above) is applied and divided by the scale, the network's residual becomes "
                 "the score, Gaussian Tweedie (noise std 1 before scaling) gives the posterior "
                 "mean there, the exact unbiased inverse of the transform (Makitalo & Foi's "
                 "closed-form approximation, at or above zero counts) brings it back to input "
                 "units, and the result keeps the local mean of the data (Gaussian of std "
                 "8 px). ")
    else:
        steps = ("the offset is removed and intensities divided by the scale, the network's "
                 "residual becomes the score, Tweedie's formula for the noise model gives the "
                 "posterior mean, the result goes back to input units and keeps the local "
                 "mean of the data (Gaussian of std 8 px). ")
    lines = [
        f"# {name}", "", description, "",
        "A Noise2Score denoiser (Kim & Ye, NeurIPS 2021) trained self-supervised with "
        f"napari-noise2score {model.version or package_version()}.", "",
        "## Noise model", "",
        f"- noise model: **{cfg.noise}**"
        + ("" if not cfg.count_domain else f", mixed-noise mode {cfg.mixed_mode}"),
        *(f"- {_PARAM_NAMES[k]}: {v:g}" + ("" if k == "shape" else " (input intensity units)")
          for k, v in params.items()),
        f"- camera offset: {cfg.offset:g}",
        f"- {describe_route(cfg)}",
        f"- intensity scale: {model.scale:g} ({scaled} mapped to 1.0)",
        f"- final training perturbation sigma_a: {model.final_sigma_a:g}",
        network,
        f"- training: {model.steps} steps in {model.seconds:.0f} s", "",
        "The model only fits data with this noise model and these parameters.", "",
        "## Training data", "", data_text, "",
        "## What the model computes", "",
        "One TorchScript module does the whole denoising, in float32"
        + (" (the transform and its inverse in float64, as the plugin computes them)"
           if cfg.anscombe else "") + ": " + steps
        + ("Each input is averaged over its 8 flips and quarter turns (test-time "
           "augmentation)." if tta else "One pass per input, no test-time augmentation.")
        + " The plugin's nonlocal Wiener step after Tweedie's is not part of the module "
        "(it equals `denoise(..., wiener=False)`).",
        "", f"Tiling: a consumer that cuts large images into tiles should give each tile a "
        f"halo of at least {halo_px(model)} pixels (the network's receptive field plus the "
        "local-mean filter's reach) to get the whole-image result.",
        "", "Input and output: (batch, channel=1, y, x), float32, in the camera's intensity "
        "units; each batch entry is one 2D plane. Integer images are converted to float32 "
        "(the plugin clips the result of an integer image to its type's range; this module "
        "does not know the type).",
        "", "## Validation", "",
        f"The test input is {test_source}; the test output is this module's result on it, "
        "which equals napari-noise2score's own `denoise` (no test-time augmentation) to "
        "float tolerance (checked at export).", "",
        "In napari-noise2score: `napari-noise2score denoise IMAGE --model THIS.zip -o OUT.tif` "
        "or Load model in the widgets.", "",
    ]
    return "\n".join(lines)


_PARAM_NAMES = {"sigma": "sigma (Gaussian std; read noise for poisson-gaussian)",
                "gain": "gain zeta (intensity of one photon count)", "shape": "Gamma shape k"}


def halo_px(model: Noise2ScoreModel) -> int:
    """Pixels a tile needs around it for the whole-image result: the network's receptive
    field (``core.inference.default_overlap``) plus the local-mean filter's reach."""
    return default_overlap(model.net) + int(TRUNCATE * MEAN_RADIUS + 0.5)


def export_package(model: Noise2ScoreModel, path: str | os.PathLike,
                   image: np.ndarray | None = None, name: str | None = None,
                   description: str | None = None, authors: Sequence[str] | None = None,
                   training_data: str | None = None, license: str = "CC-BY-4.0",
                   tta: bool = False, validate: bool = True) -> tuple[Path, str]:
    """Write ``model`` as a bioimage.io model package ``path`` (.zip, atomically); return the
    path and the sentence saying which data the test pair was made from. ExportError for a
    model the export does not reproduce, or whose exported module disagrees with the
    plugin's own denoising of the test image."""
    require_bioimageio()
    path = Path(path)
    if not is_package(path):
        raise ExportError(f"a bioimage.io package is a .zip file, not {path.name}")
    check_exportable(model.config)
    weights = sum(t.numel() * t.element_size() for t in model.net.state_dict().values())
    check_location(path, 3 * weights + 2**21, what="package")
    plane, test_source = make_test_plane(model, image)
    denoiser = build_denoiser(model, tta)
    scripted = torch.jit.script(denoiser)
    with torch.inference_mode():
        out = scripted(torch.from_numpy(plane)[None, None]).numpy()
    if not tta:
        # the plugin's own, without the Wiener step (not part of the exported module)
        reference = denoise_array(model.with_options(tta=False, wiener=False), plane)
        diff = float(np.abs(out[0, 0] - reference).max())
        if not diff <= 1e-4 * max(1.0, float(np.abs(reference).max())):
            raise ExportError(f"the exported module differs from the plugin's denoising by "
                              f"{diff:.3g}: this model cannot be exported exactly")
    name = name or f"Noise2Score {model.config.noise} denoiser"
    description = description or (f"Self-supervised Noise2Score denoiser for "
                                  f"{model.config.noise} noise (napari-noise2score)")
    data_text = training_data or ("Not recorded in the model file: the images the model was "
                                  f"trained on. The test input is {test_source}.")
    with tempfile.TemporaryDirectory(prefix="n2s-zoo-") as tmp_name:
        tmp = Path(tmp_name)
        scripted.save(str(tmp / "denoiser.pt"))
        torch.save(denoiser.state_dict(), tmp / "denoiser_state_dict.pt")
        model.save(tmp / MODEL_FILE)
        np.save(tmp / "test_input.npy", plane[None, None])
        np.save(tmp / "test_output.npy", out.astype(np.float32))
        _write_tiff(tmp / "sample_input.tif", plane)
        _write_tiff(tmp / "sample_output.tif", out[0, 0])
        _cover(plane, out[0, 0], tmp / "cover.png")
        (tmp / "README.md").write_text(
            _readme(model, name, description, data_text, test_source, tta), encoding="utf-8")
        try:
            descr = _describe(model, tmp, name, description, authors, license, data_text, tta)
        except ValueError as exc:  # pydantic's ValidationError: a bad name, licence, author
            raise ExportError(f"the package description is invalid: {_pydantic_line(exc)}") \
                from None
        zipped = tmp / "package.zip"
        _save(descr, zipped, validate)

        with atomic_output(path) as target:
            shutil.copyfile(zipped, target)
    return path, test_source


def _describe(model: Noise2ScoreModel, tmp: Path, name: str, description: str,
              authors: Sequence[str] | None, license: str, data_text: str, tta: bool):
    """The package's ModelDescr (bioimageio.spec 0.5)."""
    from bioimageio.spec.model import v0_5 as m

    spec = denoiser_spec(model, tta)
    multiple = int(spec["stride"] * spec["unshuffle"] * 2 ** spec["depth"])
    torch_version = m.Version(torch.__version__.split("+")[0])
    units = "input intensity units (camera counts or grey levels), float32"
    raw, out_id = m.TensorId("raw"), m.TensorId("denoised")

    def axes(output: bool) -> list:
        size = {a: (m.SizeReference(tensor_id=raw, axis_id=m.AxisId(a)) if output
                    else m.ParameterizedSize(min=multiple, step=1)) for a in "yx"}
        kind = m.SpaceOutputAxis if output else m.SpaceInputAxis
        return [m.BatchAxis(), m.ChannelAxis(channel_names=[m.Identifier("intensity")]),
                *(kind(id=m.AxisId(a), size=size[a]) for a in "yx")]

    author_list = [m.Author(name=a) for a in (authors or [_user()])]
    ours = {"format": "napari-noise2score-bioimageio", "format_version": 1,
            "package_version": model.version or package_version(), "model_file": MODEL_FILE,
            "config": model.config.to_dict(), "scale": float(model.scale),
            "final_sigma_a": float(model.final_sigma_a), "tta": bool(tta),
            "training_data": data_text}
    return m.ModelDescr(
        name=name, description=description, authors=author_list,
        cite=[m.CiteEntry(**NOISE2SCORE_CITATION)], license=license,
        covers=[m.FileDescr(source=tmp / "cover.png")],
        documentation=m.FileDescr(source=tmp / "README.md"),
        attachments=[m.FileDescr(source=tmp / MODEL_FILE)],
        tags=["denoising", "noise2score", "self-supervised", "fluorescence-light-microscopy",
              "2d", "pytorch", "napari-noise2score", model.config.noise,
              *(["anscombe"] if model.config.anscombe else [])],
        inputs=[m.InputTensorDescr(
            id=raw, axes=axes(False), description=f"noisy 2D planes, {units}",
            test_tensor=m.FileDescr(source=tmp / "test_input.npy"),
            sample_tensor=m.FileDescr(source=tmp / "sample_input.tif"),
            data=m.IntervalOrRatioDataDescr(type="float32"))],
        outputs=[m.OutputTensorDescr(
            id=out_id, axes=axes(True), description=f"denoised planes, {units}",
            test_tensor=m.FileDescr(source=tmp / "test_output.npy"),
            sample_tensor=m.FileDescr(source=tmp / "sample_output.tif"),
            data=m.IntervalOrRatioDataDescr(type="float32"))],
        weights=m.WeightsDescr(
            pytorch_state_dict=m.PytorchStateDictWeightsDescr(
                source=tmp / "denoiser_state_dict.pt", pytorch_version=torch_version,
                architecture=m.ArchitectureFromLibraryDescr(
                    callable=m.Identifier("ExportedDenoiser"),
                    import_from="napari_noise2score.export.torchscript", kwargs=spec),
                comment="needs napari-noise2score installed (the architecture)"),
            torchscript=m.TorchscriptWeightsDescr(
                source=tmp / "denoiser.pt", pytorch_version=torch_version,
                parent="pytorch_state_dict",
                comment="the whole denoiser; needs only PyTorch")),
        config=m.Config(**{CONFIG_KEY: ours}),
    )


def _write_tiff(path: Path, plane: np.ndarray) -> None:
    tifffile.imwrite(path, np.asarray(plane, np.float32))


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return "napari-noise2score user"


def _save(descr: Any, zipped: Path, validate: bool) -> None:
    """Write the package; with ``validate``, read it back through bioimageio.spec."""
    from bioimageio.spec import save_bioimageio_package

    try:
        save_bioimageio_package(descr, output_path=zipped)
    except Exception as exc:
        raise ExportError(f"bioimageio.spec could not write the package: {_first_line(exc)}") \
            from None
    if validate:
        _load_valid(zipped, ExportError, "the written package")


def _pydantic_line(exc: Exception) -> str:
    """The first error of a pydantic ValidationError (else the message), in one line."""
    errors = getattr(exc, "errors", None)
    if callable(errors) and errors():
        first = errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()) if not str(p).startswith("func"))
        msg = (str(first.get("msg", "")).splitlines() or [""])[0]
        msg = msg if len(msg) <= 120 else msg[:117] + "..."
        given = first.get("input")
        return f"{loc}: {msg}" + (f" (given {given!r})" if isinstance(given, str) else "")
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _load_valid(path: Path, error: type[Exception], what: str) -> Any:
    """The ModelDescr of a package bioimageio.spec validates (all files and hashes)."""
    from bioimageio.spec import InvalidDescr, load_description
    from bioimageio.spec.model.v0_5 import ModelDescr

    try:
        descr = load_description(path, perform_io_checks=True)
    except Exception as exc:
        raise error(f"{what} is not a readable bioimage.io package: {_first_line(exc)}") \
            from None
    if isinstance(descr, InvalidDescr) or not isinstance(descr, ModelDescr):
        raise error(f"{what} is not a valid bioimage.io model package: "
                    f"{_validation_error(descr)}")
    return descr


def _validation_error(descr: Any) -> str:
    """The first error of a failed validation, in one line."""
    for detail in getattr(descr.validation_summary, "details", []):
        for err in getattr(detail, "errors", []):
            loc = ".".join(str(p) for p in err.loc)
            return f"{loc}: {err.msg}".splitlines()[0]
    return f"a {getattr(descr, 'type', 'resource')} description, not a model"


# ---- import -------------------------------------------------------------------------------
def import_package(path: str | os.PathLike, device: str | torch.device = "cpu"
                   ) -> Noise2ScoreModel:
    """The model of a package exported by this plugin; a missing, corrupt, tampered or
    foreign package raises ModelFileError (one line)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model package not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a bioimage.io model package (not a zip file)")
    try:
        require_bioimageio()
    except ExportError as exc:
        raise ModelFileError(str(exc)) from None
    descr = _load_valid(path, ModelFileError, str(path))
    ours = (descr.config.model_extra or {}).get(CONFIG_KEY)
    if not isinstance(ours, dict) or ours.get("format") != "napari-noise2score-bioimageio":
        raise ModelFileError(f"{path} is a bioimage.io model but not one exported by "
                             "napari-noise2score: run it with bioimageio.core, deepImageJ "
                             "or ilastik")
    if ours.get("format_version", 0) > 1:
        raise ModelFileError(f"{path} was exported by a newer napari-noise2score; upgrade "
                             "the plugin to read it")
    with tempfile.TemporaryDirectory(prefix="n2s-zoo-") as tmp, \
            zipfile.ZipFile(path) as archive:
        name = Path(str(ours.get("model_file", MODEL_FILE))).name
        try:
            archive.extract(name, tmp)
        except (KeyError, OSError, zipfile.BadZipFile) as exc:
            raise ModelFileError(f"{path} lacks its napari-noise2score model file: "
                                 f"{_first_line(exc)}") from None
        model = Noise2ScoreModel.load(Path(tmp) / name, device)
    if model.config.to_dict() != ours.get("config") or \
            float(model.scale) != ours.get("scale"):
        raise ModelFileError(f"{path} was altered: its model file does not match its "
                             "description")
    return model
