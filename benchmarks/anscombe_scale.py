"""The prior's domain on the Anscombe route, zero-shot: each plane of the low-photon
development images (``benchmarks/lowphoton.py``'s FMD, W2S and synthetic two-photon sets)
denoised by the shipped prior with the network's domain at ``--factors`` x the plane's own
transformed 99.9th percentile (``prior.ANSCOMBE_SCALE`` is what the plugin uses), with and
without the Wiener step; intensity-matched PSNR (``lowphoton.matched_psnr``) per image and
mean per kind (W2S per channel). Development only (2 threads, not timed).

    python benchmarks/anscombe_scale.py ../shared/data --factors 0.7,0.85,1.0,1.2 \\
        --out benchmarks/results/anscombe_scale.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch

from napari_noise2score import denoise
from napari_noise2score.core import planewise
from napari_noise2score.core import prior as P
from napari_noise2score.core.score import to_network_units

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lowphoton as L  # noqa: E402


def sweep(root: Path, kinds: list[str], factors: list[float]) -> dict:
    """{kind/image: {factor[_nw]: matched PSNR}}; None where the prior refuses the std."""
    saved, P.ANSCOMBE_SCALE = P.ANSCOMBE_SCALE, 1.0  # the domain: factor x the plane's own
    try:
        return _sweep(root, kinds, factors)
    finally:
        P.ANSCOMBE_SCALE = saved


def _sweep(root: Path, kinds: list[str], factors: list[float]) -> dict:
    out = {}
    for kind in kinds:
        for g in L.groups(root, kind):
            bound, _ = P.bind(P.unbound_model(), g.noisy)
            for name, y, clean in zip(g.names, g.noisy, g.clean, strict=True):
                cfg = planewise.config_for_plane(bound.config, y)
                own = planewise.transformed_scale([to_network_units(cfg, y)])
                row: dict = {"own_scale": own}
                for f in factors:
                    try:
                        model = P.anscombe_model(bound.config, own * f,
                                                 copy.deepcopy(bound.net))
                    except P.PriorRangeError:
                        row[f"{f:g}"] = row[f"{f:g}_nw"] = None
                        continue
                    for wiener in (True, False):
                        x = denoise(y, model.with_options(wiener=wiener))
                        row[f"{f:g}" + ("" if wiener else "_nw")] = L.matched_psnr(clean, x)
                key = f"{kind}/{name}"
                out[key] = row
                print(key, {k: None if v is None else round(v, 2) for k, v in row.items()},
                      flush=True)
    return out


def table(images: dict) -> dict:
    """Mean per kind (W2S per channel) of every column, over the images that have it."""
    groups: dict[str, list[dict]] = {}
    for key, row in images.items():
        kind = key.split("/")[0] + (f"_{key[-3:]}" if key.startswith("w2s") else "")
        groups.setdefault(kind, []).append(row)
    return {kind: {c: round(float(np.mean(v)), 3) if (v := [r[c] for r in rows
                                                             if r[c] is not None]) else None
                   for c in rows[0] if c != "own_scale"}
            for kind, rows in groups.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("--kinds", default="w2s,fmd,twophoton")
    p.add_argument("--factors", default="0.7,0.85,1.0,1.2")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "results" / "anscombe_scale.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = sweep(args.data, args.kinds.split(","), [float(f) for f in args.factors.split(",")])
    result = {"command": " ".join(sys.argv), "table": table(images), "images": images}
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["table"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
