"""Issue 14, part 1: generated bad inputs for every reader and the model loader.

Each case ends in one clear error line and exit 2 (CLI), a Noise2ScoreError (API), or, for
a mutated file that is still valid, a complete result; never a traceback, a hang, a
partial file or code run from the file. Outcomes are counted (``helpers.record_case``).
N2S_FUZZ_EXAMPLES sets the cases per strategy (default 25; e.g. 500 for a long run).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import resource
import signal
import struct
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from helpers import env_with_src, record_case, smooth_image, tiny_model
from napari_noise2score.api import denoise_file, load_model, open_lazy
from napari_noise2score.cli import main
from napari_noise2score.core.config import TrainConfig
from napari_noise2score.core.errors import ModelFileError, Noise2ScoreError

EXAMPLES = int(os.environ.get("N2S_FUZZ_EXAMPLES", "25"))
#: Seconds one case may take before it counts as a hang.
CASE_SECONDS = 60
#: Bytes a case may allocate (NumPy, traced) or add to the peak RSS: far below what the
#: lying headers claim (terabytes), far above what a 48 x 48 image needs.
MAX_ALLOCATION = 256 * 2**20
#: No shrinking: a failing case is reported as found (shrinking a slow case takes minutes).
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                phases=(Phase.explicit, Phase.generate), report_multiple_bugs=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
FORMATS = ("tiff", "bigtiff", "ome", "imagej", "npy", "png", "jpeg", "zarr")
SUFFIX = {"tiff": ".tif", "bigtiff": ".tif", "ome": ".ome.tif", "imagej": ".tif",
          "npy": ".npy", "png": ".png", "jpeg": ".jpg", "zarr": ".zarr"}


class Hang(BaseException):
    """A case ran past CASE_SECONDS."""


@contextlib.contextmanager
def time_limit(seconds: float = CASE_SECONDS) -> Iterator[None]:
    """Raise Hang in the main thread when the block runs longer than ``seconds``."""
    def on_alarm(signum, frame):
        raise Hang()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def noisy_plane(size: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(smooth_image(size, seed) * 200 + rng.normal(0, 20, (size, size)), 0,
                   255).astype(np.uint8)


def write_valid(fmt: str, path: Path) -> Path:
    """A small valid file of ``fmt`` at ``path``."""
    plane = noisy_plane()
    if fmt == "tiff":
        tifffile.imwrite(path, plane)
    elif fmt == "bigtiff":
        tifffile.imwrite(path, plane.astype(np.uint16), bigtiff=True)
    elif fmt == "ome":
        tifffile.imwrite(path, np.stack([plane, plane[::-1]]), ome=True,
                         metadata={"axes": "ZYX"})
    elif fmt == "imagej":
        tifffile.imwrite(path, np.stack([plane, plane.T]), imagej=True,
                         metadata={"axes": "TYX"})
    elif fmt == "npy":
        np.save(path, plane.astype(np.float32))
    elif fmt in ("png", "jpeg"):
        Image.fromarray(plane).save(path)
    else:
        import zarr

        array = zarr.create_array(str(path), shape=plane.shape, chunks=(24, 24),
                                  dtype=plane.dtype, dimension_names=["y", "x"])
        array[:] = plane
    return path


def data_file(path: Path) -> Path:
    """The file of a store whose bytes are mutated: the file itself, or a zarr's metadata
    or first chunk."""
    if not path.is_dir():
        return path
    chunk = next(p for p in sorted(path.rglob("*")) if p.is_file() and p.name != "zarr.json")
    return chunk


def stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def denoise_outcome(src: Path, model: Path, out: Path, extra: tuple[str, ...] = ()) -> str:
    """Run ``denoise`` in this process on ``src`` and classify what happened."""
    err = io.StringIO()
    try:
        with time_limit(), contextlib.redirect_stderr(err), \
                contextlib.redirect_stdout(io.StringIO()):
            code = main(["denoise", str(src), "--model", str(model), "-o", str(out),
                         "--threads", "1", *extra])
    except Hang:
        return "hang"
    except BaseException as exc:  # noqa: BLE001 - anything escaping main() is a crash
        return f"crash: {type(exc).__name__}: {exc}"
    text = err.getvalue()
    leftovers = [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    if leftovers:
        return f"partial file: {leftovers}"
    if code == 0:
        try:
            result = tifffile.imread(out)
        except Exception as exc:  # noqa: BLE001 - an unreadable "finished" output
            return f"partial file: {out} unreadable ({exc})"
        return "accepted" if result.size else "partial file: empty result"
    lines = stderr_lines(text)
    errors = [line for line in lines if "error" in line.lower()]
    if (code == 2 and lines and lines[-1].startswith("napari-noise2score: error: ")
            and len(errors) == 1 and "Traceback" not in text and not out.exists()):
        return "clear error"
    return f"crash: exit {code}, stderr {text!r}"


def check(category: str, outcome: str) -> None:
    """Count the outcome; fail the case unless it is a clear error or a complete result."""
    name = outcome.split(":")[0]
    record_case(category, name if name in ("clear error", "accepted", "hang",
                                           "partial file") else "crash")
    assert name in ("clear error", "accepted"), outcome


def fresh(tmp_path: Path, name: str) -> Path:
    """An empty folder for one generated case (hypothesis reuses ``tmp_path``)."""
    folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    return folder / name


# ---- mutated and truncated bytes, every format ------------------------------------------

mutations = st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                               st.binary(min_size=1, max_size=8)), min_size=1, max_size=6)


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(edits=mutations, cut=st.one_of(st.none(), st.floats(0, 1, exclude_max=True)))
def test_mutated_and_truncated_files(tmp_path, tiny_model_file, fmt, edits, cut):
    src = write_valid(fmt, fresh(tmp_path, "in" + SUFFIX[fmt]))
    target = data_file(src)
    raw = bytearray(target.read_bytes())
    for where, junk in edits:
        at = int(where * len(raw))
        raw[at:at + len(junk)] = junk
    if cut is not None:
        raw = raw[: int(cut * len(raw))]
    target.write_bytes(bytes(raw))
    check(f"mutated bytes: {fmt}", denoise_outcome(src, tiny_model_file, src.parent / "out.tif"))


@pytest.mark.parametrize("fmt", ("tiff", "npy", "png", "model"))
@FUZZ
@given(raw=st.binary(max_size=2048), magic=st.booleans())
def test_random_bytes(tmp_path, tiny_model_file, fmt, raw, magic):
    heads = {"tiff": b"II*\x00", "npy": b"\x93NUMPY\x01\x00", "png": b"\x89PNG\r\n\x1a\n",
             "model": b"PK\x03\x04"}
    path = fresh(tmp_path, f"in.{'n2s' if fmt == 'model' else fmt}")
    path.write_bytes((heads[fmt] if magic else b"") + raw)
    if fmt == "model":
        image = write_valid("tiff", path.parent / "img.tif")
        check("random bytes: model", denoise_outcome(image, path, path.parent / "out.tif"))
        with pytest.raises(ModelFileError):
            load_model(path, "cpu")
        return
    check(f"random bytes: {fmt}", denoise_outcome(path, tiny_model_file, path.parent / "out.tif"))
    with pytest.raises(Noise2ScoreError):
        open_lazy(path)


# ---- headers that claim huge sizes: refused before any large allocation -----------------

def lie_tiff(path: Path, width: int, height: int, count: int) -> None:
    tifffile.imwrite(path, noisy_plane())
    with tifffile.TiffFile(path, mode="r+") as tif:
        tags = tif.pages[0].tags
        tags["ImageWidth"].overwrite(width)
        tags["ImageLength"].overwrite(height)
        tags["RowsPerStrip"].overwrite(height)
        tags["StripByteCounts"].overwrite(count)


def lie_npy(path: Path, shape: tuple[int, ...]) -> None:
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape!r}, }}"
    header = header.ljust(118) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
                     + bytes(64))


def lie_png(path: Path, width: int, height: int) -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(bytes(256))) + chunk(b"IEND", b""))


def lie_zarr(path: Path, shape: tuple[int, int]) -> None:
    write_valid("zarr", path)
    meta = json.loads((path / "zarr.json").read_text())
    meta["shape"] = list(shape)
    (path / "zarr.json").write_text(json.dumps(meta))


big = st.integers(2**20, 2**32 - 1)


@FUZZ
@given(fmt=st.sampled_from(("tiff", "npy", "png", "zarr")), width=big, height=big,
       extra=st.integers(1, 2**20))
def test_headers_claiming_huge_sizes(tmp_path, tiny_model_file, fmt, width, height, extra):
    src = fresh(tmp_path, "in" + SUFFIX[fmt])
    if fmt == "tiff":
        lie_tiff(src, width, height, extra)
    elif fmt == "npy":
        lie_npy(src, (extra, height, width))
    elif fmt == "png":
        lie_png(src, width, height)
    else:
        lie_zarr(src, (height, width))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    outcome = denoise_outcome(src, tiny_model_file, src.parent / "out.tif")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss
    if outcome == "accepted" or max(peak, grown) > MAX_ALLOCATION:
        outcome = f"crash: {outcome}, allocated {peak} bytes, RSS grew {grown} bytes"
    check(f"huge claimed size: {fmt}", outcome)


def test_huge_claimed_plane_is_refused_before_the_tile_grid(tmp_path, tiny_model_file,
                                                           monkeypatch):
    """Regression: a zarr claiming 2**32 x 2**32 pixels planned 10**16 dask chunks and built
    a grid of 10**13 tiles before the output size was checked (memory filled, killed)."""
    from napari_noise2score.core import tiling

    with pytest.raises(Noise2ScoreError, match="tiles of"):
        tiling.TiledDenoiser(tiny_model(), (2**32 - 1, 2**32 - 1), "YX")
    src = tmp_path / "in.zarr"
    lie_zarr(src, (2**32 - 1, 2**32 - 1))
    monkeypatch.setattr(tiling, "tile_grid", lambda *a: pytest.fail("tile grid built"))
    with pytest.raises(Noise2ScoreError, match="chunks"):
        denoise_file(src, tiny_model_file, tmp_path / "out.tif")
    big = tmp_path / "big.zarr"
    import zarr

    zarr.create_array(str(big), shape=(2**21, 2**21), chunks=(2**12, 2**12), dtype="u1")
    with pytest.raises(Noise2ScoreError, match="the disk has"):
        denoise_file(big, tiny_model_file, tmp_path / "out.tif")
    assert not list(tmp_path.glob("*.tif")) and not list(tmp_path.glob(".*tmp"))


# ---- odd but well-formed contents: dtypes, NaN/inf, 0-size and 1-pixel axes, 5D/6D -------

ODD_DTYPES = ("bool", "complex64", "complex128", "int64", "uint64", "float16", ">f4", ">u2",
              "int8", "float64", "uint32")
odd_shapes = st.one_of(
    hnp.array_shapes(min_dims=2, max_dims=3, min_side=0, max_side=3),
    st.tuples(st.integers(1, 2), st.integers(1, 40), st.integers(1, 40)),
    hnp.array_shapes(min_dims=5, max_dims=6, min_side=1, max_side=3).map(
        lambda s: s[:-2] + (16, 16)))


@FUZZ
@given(data=st.data(), dtype=st.sampled_from(ODD_DTYPES), shape=odd_shapes,
       fmt=st.sampled_from(("npy", "tiff")), special=st.sampled_from(("none", "nan", "inf",
                                                                      "all-nan")))
def test_odd_dtypes_shapes_and_values(tmp_path, tiny_model_file, data, dtype, shape, fmt, special):
    dt = np.dtype(dtype)
    array = data.draw(hnp.arrays(dt, shape))
    if dt.kind in "fc" and array.size:
        array = np.nan_to_num(array, nan=0, posinf=0, neginf=0)
        flat = array.reshape(-1)
        if special == "nan":
            flat[:: max(1, flat.size // 3)] = np.nan
        elif special == "inf":
            flat[0] = np.inf
        elif special == "all-nan":
            flat[:] = np.nan
    src = fresh(tmp_path, "in" + SUFFIX[fmt])
    if fmt == "npy":
        np.save(src, array)
    else:
        try:
            tifffile.imwrite(src, array)
        except Exception:  # noqa: BLE001 - tifffile cannot store it: nothing to read
            record_case("odd contents", "clear error")
            return
    check("odd contents", denoise_outcome(src, tiny_model_file, src.parent / "out.tif"))


# ---- unicode paths -------------------------------------------------------------------------

names = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
                min_size=1, max_size=40).filter(
    lambda s: s.strip(". ") == s and len(s.encode()) < 200)


@FUZZ
@given(stem=names, folder=names, fmt=st.sampled_from(("tiff", "npy", "png")))
def test_unicode_paths(tmp_path, tiny_model_file, stem, folder, fmt):
    base = fresh(tmp_path, folder)
    base.mkdir()
    src = write_valid(fmt, base / (stem + SUFFIX[fmt]))
    out = base / "résultats" / f"{stem}.tif"
    outcome = denoise_outcome(src, tiny_model_file, out)
    if outcome == "accepted" and not out.is_file():
        outcome = "crash: no output at the unicode name"
    check("unicode path", outcome)


# ---- the model loader: mutated files, damaged payloads, code execution ------------------

@FUZZ
@given(edits=mutations, cut=st.one_of(st.none(), st.floats(0, 1, exclude_max=True)))
def test_mutated_model_files(tmp_path, tiny_model_file, edits, cut):
    path = fresh(tmp_path, "m.n2s")
    raw = bytearray(tiny_model_file.read_bytes())
    for where, junk in edits:
        at = int(where * len(raw))
        raw[at:at + len(junk)] = junk
    if cut is not None:
        raw = raw[: int(cut * len(raw))]
    path.write_bytes(bytes(raw))
    image = write_valid("tiff", path.parent / "img.tif")
    check("mutated model file", denoise_outcome(image, path, path.parent / "out.tif"))


values = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                   st.lists(st.integers(), max_size=3))


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(sorted(TrainConfig().to_dict())), values,
                               min_size=1, max_size=4),
       top=st.dictionaries(st.sampled_from(("scale", "final_sigma_a", "steps", "seconds",
                                            "format_version", "config", "state_dict")),
                           values, max_size=2))
def test_damaged_model_payloads(tmp_path, changes, top):
    path = fresh(tmp_path, "m.n2s")
    tiny_model().save(path)
    payload = torch.load(path, weights_only=True)
    payload["config"].update(changes)
    payload.update(top)
    torch.save(payload, path)
    try:
        with time_limit():
            load_model(path, "cpu")
        outcome = "accepted"
    except ModelFileError as exc:
        outcome = "clear error" if "\n" not in str(exc) else f"crash: {exc!r}"
    except Hang:
        outcome = "hang"
    except BaseException as exc:  # noqa: BLE001 - any other exception is a crash
        outcome = f"crash: {type(exc).__name__}: {exc}"
    check("damaged model payload", outcome)


@pytest.mark.parametrize("field, value", [("device", True), ("noise", 3),
                                          ("width", 2**70)])
def test_model_config_of_the_wrong_type_is_a_model_file_error(tmp_path, field, value):
    """Regression: a stored ``device`` of True raised AttributeError from load."""
    path = tiny_model().save(tmp_path / "m.n2s")
    payload = torch.load(path, weights_only=True)
    payload["config"][field] = value
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="damaged model file"):
        load_model(path, "cpu")


def test_model_with_a_non_numeric_format_version_is_a_model_file_error(tmp_path):
    """Regression: a format_version that is not a number raised TypeError from load."""
    path = tiny_model().save(tmp_path / "m.n2s")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = "2"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="format version"):
        load_model(path, "cpu")


class Payload:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Callable, tuple]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def pickle_payload(kind: str, path: Path, marker: Path) -> Path:
    """A file of ``kind`` that would run code (write ``marker``) if unpickled."""
    evil = Payload(marker)
    if kind == "torch zip":
        torch.save({"format": "napari-noise2score-model", "config": evil}, path)
    elif kind == "legacy torch":
        torch.save({"format": "napari-noise2score-model", "config": evil}, path,
                   _use_new_zipfile_serialization=False)
    elif kind == "plain pickle":
        path.write_bytes(pickle.dumps(evil))
    elif kind == "npy":
        np.save(path, np.array([evil, 1], dtype=object), allow_pickle=True)
    else:  # a zarr v2 array of Python objects stored with the pickle codec
        path.mkdir()
        (path / ".zarray").write_text(json.dumps({
            "zarr_format": 2, "shape": [2, 2], "chunks": [2, 2], "dtype": "|O",
            "compressor": None, "fill_value": None, "order": "C",
            "filters": [{"id": "pickle", "protocol": 4}]}))
        (path / "0.0").write_bytes(pickle.dumps(np.array([[evil, 1], [2, 3]], dtype=object)))
    return path


PAYLOADS = {"torch zip": "m.n2s", "legacy torch": "m.n2s", "plain pickle": "m.n2s",
            "npy": "in.npy", "zarr": "in.zarr"}


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_pickle_payloads_never_run(tmp_path, tiny_model_file, kind):
    marker = tmp_path / "MARKER"
    path = pickle_payload(kind, tmp_path / PAYLOADS[kind], marker)
    out = tmp_path / "out.tif"
    if path.suffix == ".n2s":
        image = write_valid("tiff", tmp_path / "img.tif")
        outcome = denoise_outcome(image, path, out)
        with pytest.raises(ModelFileError):
            load_model(path, "cpu")
    else:
        outcome = denoise_outcome(path, tiny_model_file, out)
        with pytest.raises(Noise2ScoreError):
            denoise_file(path, tiny_model_file, tmp_path / "api.tif")
    if marker.exists():
        outcome = "code execution"
    check("pickle payload", outcome)
    assert not marker.exists()


# ---- a few through the real command (a fresh process, its own exit status) -----------------

@pytest.mark.parametrize("kind", ["truncated tiff", "random npy", "huge png", "bad model"])
def test_bad_inputs_through_the_real_command(tmp_path, tiny_model_file, kind):
    import subprocess
    import sys

    src, model = tmp_path / "in.tif", tiny_model_file
    if kind == "truncated tiff":
        write_valid("tiff", src)
        src.write_bytes(src.read_bytes()[:700])
    elif kind == "random npy":
        src = tmp_path / "in.npy"
        src.write_bytes(b"\x93NUMPY\x01\x00" + np.random.default_rng(0).bytes(300))
    elif kind == "huge png":
        src = tmp_path / "in.png"
        lie_png(src, 2**31 - 1, 2**31 - 1)
    else:
        write_valid("tiff", src)
        model = tmp_path / "bad.n2s"
        model.write_bytes(tiny_model_file.read_bytes()[:-100])
    env = env_with_src()
    try:
        proc = subprocess.run([sys.executable, "-m", "napari_noise2score", "denoise", str(src),
                               "--model", str(model), "-o", str(tmp_path / "out.tif")],
                              env=env, capture_output=True, text=True, timeout=CASE_SECONDS * 2)
    except subprocess.TimeoutExpired:
        check("bad input, real command", "hang")
    lines = stderr_lines(proc.stderr)
    clear = (proc.returncode == 2 and lines[-1].startswith("napari-noise2score: error: ")
             and "Traceback" not in proc.stderr)
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(("out", ".out"))]
    check("bad input, real command", "partial file" if left else "clear error" if clear
          else f"crash: exit {proc.returncode}: {proc.stderr}")
