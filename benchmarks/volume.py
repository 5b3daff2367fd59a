"""Large-volume benchmark: peak resident memory and throughput of TIFF-to-TIFF denoising.

Writes synthetic uint16 ZYX volumes (2048 x 2048 planes, Poisson-Gaussian noise) of the
given sizes into FOLDER, trains a small model for a few seconds, then denoises each volume
with the streaming command line (``napari-noise2score denoise``) and, for sizes up to
``--naive-max-gib``, with the naive path (read whole, ``denoise`` in memory, write whole).
Each run is a fresh subprocess that reports its own peak RSS (ru_maxrss). Prints JSON.

    python benchmarks/volume.py /tmp/n2s-volume --gib 1 4 --naive-max-gib 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PLANE = 2048


def synthetic_plane(z: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth pattern (changing with z) with Poisson-Gaussian noise (gain 4, read sigma 8)."""
    yy, xx = np.mgrid[0:PLANE, 0:PLANE].astype(np.float32) / PLANE
    clean = 400 + 300 * np.sin(9 * xx + z / 7) * np.cos(7 * yy - z / 11) + 800 * (
        (xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.05)
    counts = rng.poisson(np.maximum(clean, 0) / 4.0) * 4.0
    return np.clip(counts + rng.normal(0, 8, clean.shape) + 100, 0, 65535).astype(np.uint16)


def write_volume(path: Path, gib: float) -> tuple[int, ...]:
    """Write the volume plane by plane (BigTIFF); reuse an existing file of the same shape."""
    import tifffile

    n = max(1, round(gib * 2**30 / (PLANE * PLANE * 2)))
    shape = (n, PLANE, PLANE)
    if path.exists():
        with tifffile.TiffFile(path) as tif:
            if tif.series[0].shape == shape:
                return shape
    rng = np.random.default_rng(0)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write((synthetic_plane(z, rng) for z in range(n)), shape=shape, dtype=np.uint16,
                  photometric="minisblack", metadata={"axes": "ZYX"})
    return shape


def train_model(volume: Path, model: Path, seconds: float) -> None:
    from napari_noise2score import train
    from napari_noise2score.io.lazy import open_lazy, training_planes

    data, axes = open_lazy(volume)
    planes = training_planes(data, axes, max_bytes=4 * PLANE * PLANE * 2)
    m = train(planes, noise="poisson-gaussian", gain=4.0, sigma=8.0, max_seconds=seconds, tta=False,
              width=8, depth=2, device="cpu")
    m.save(model)


def child(mode: str, src: str, model: str, out: str) -> None:
    """One measured run in this (fresh) process; prints a JSON line."""
    start = time.perf_counter()
    if mode == "stream":
        from napari_noise2score.cli import main

        code = main(["denoise", src, "--model", model, "-o", out])
        assert code == 0, code
    else:
        from napari_noise2score import denoise, load_model
        from napari_noise2score.io.files import read_image, write_tiff

        write_tiff(out, denoise(read_image(src), load_model(model, "cpu")))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak}))


def measure(mode: str, src: Path, model: Path, out: Path, shape: tuple[int, ...]) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(src), str(model), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    pixels = float(np.prod(shape))
    out.unlink(missing_ok=True)
    return {"mode": mode, "file_gib": round(src.stat().st_size / 2**30, 3), "shape": shape,
            "megapixels_per_s": round(pixels / 1e6 / result["seconds"], 3),
            "seconds": round(result["seconds"], 1),
            "peak_rss_mib": round(result["peak_rss_mib"], 1)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where the volumes go (not in the repo)")
    parser.add_argument("--gib", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--naive-max-gib", type=float, default=0.5)
    parser.add_argument("--naive-gib", type=float, default=0.5,
                        help="size of the extra volume the naive path is also run on")
    parser.add_argument("--train-seconds", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the input volumes")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    sizes = sorted(set(args.gib) | {args.naive_gib})
    volumes = {g: args.folder / f"volume_{g:g}gib.tif" for g in sizes}
    shapes = {g: write_volume(p, g) for g, p in volumes.items()}
    model = args.folder / "model.n2s"
    train_model(volumes[sizes[0]], model, args.train_seconds)
    runs = []
    for g in sizes:
        out = args.folder / f"denoised_{g:g}gib.tif"
        if g in args.gib:
            runs.append(measure("stream", volumes[g], model, out, shapes[g]))
        if g <= args.naive_max_gib:
            runs.append(measure("naive", volumes[g], model, out, shapes[g]))
        print(json.dumps(runs[-1]), file=sys.stderr)
    if not args.keep:
        for p in volumes.values():
            p.unlink(missing_ok=True)
    print(json.dumps({"machine": platform.processor() or platform.machine(),
                      "cpus": os.cpu_count(), "plane": [PLANE, PLANE], "model": "width 8, "
                      f"depth 2, {args.train_seconds:g} s training", "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
