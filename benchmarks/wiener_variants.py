"""Variants of the Wiener step with no training: the shipped prior (or ``--prior FILE``),
zero-shot, bound to each model group's estimated noise (as ``denoise --model pretrained``),
8-fold average, then one of: ``base`` (the shipped step, the route's ``wiener.SHRINK_*``),
``shrink1`` (stop 13's step: the gain's noise std 1 x sigma), ``shrink1.25`` / ``shrink2``
(1.25 / 2 x sigma), ``g32`` (32 blocks per group), ``r16`` (search radius 16), ``g32r19`` /
``g24r16`` (32 blocks within +-19, 24 within +-16: BM3D's own second-stage group and search
sizes, without its distance threshold), ``iter2`` (the
step applied twice, its first output the second's pilot), ``b6s2`` / ``b6s3`` / ``b8s2``
(block side 6 or 8, reference step 2 or 3) or ``avg86`` / ``avg8_6s2`` / ``avg8_10`` (the mean
of the shipped step and one with 6 x 6 blocks, 6 x 6 at step 2, or 10 x 10 blocks),
``ht30`` / ``ht50`` / ``htonly`` (the step on a pilot mixed with 0.3 / 0.5 / 1 of BM3D's own
hard-thresholding stage, the ``bm3d`` package at the same sigma) or ``out10`` / ``out20`` /
``out35`` (the step's output mixed with 0.1 / 0.2 / 0.35 of the network's Tweedie estimate)
or ``bm3d30`` / ``bm3d50`` (the step's output mixed with 0.3 / 0.5 of the full ``bm3d``
package output, both stages, at the same sigma).
Development only: PSNR in dB, seconds per
image and the intensity-matched PSNR (``lowphoton.matched_psnr``) per variant (2 threads; not
timed on an idle machine unless run alone), on the images of ``benchmarks/lowphoton.py``
and (``set12``) the 12 Set12 images with Gaussian noise of each ``--sigmas`` (seed = index),
the prior bound to the true sigma, BM3D (true sigma) beside them. The network's output for an
image is computed once and shared by the variants (they differ after Tweedie's step only).

    python benchmarks/wiener_variants.py ../shared/data --kinds fmd,twophoton,w2s,set12 \\
        --out benchmarks/results/wiener_variants.json
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from napari_noise2score import denoise
from napari_noise2score.core import inference, wiener
from napari_noise2score.core import prior as P
from napari_noise2score.core.noise import NoiseParams, simulate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lowphoton as L  # noqa: E402

_refine = wiener.refine
VARIANTS = {  # called as inference calls the step: (noisy, pilot, sigma, origin, shrink=)
    "base": lambda y, x, s, o, shrink: _refine(y, x, s, o, shrink=shrink),
    "shrink1": lambda y, x, s, o, shrink: _refine(y, x, s, o),
    "shrink1.25": lambda y, x, s, o, shrink: _refine(y, x, s, o, shrink=1.25),
    "shrink2": lambda y, x, s, o, shrink: _refine(y, x, s, o, shrink=2.0),
    "g32": lambda y, x, s, o, shrink: _refine(y, x, s, o, group=32, shrink=shrink),
    "r16": lambda y, x, s, o, shrink: _refine(y, x, s, o, radius=16, shrink=shrink),
    "g32r19": lambda y, x, s, o, shrink: _refine(y, x, s, o, radius=19, group=32,
                                                 shrink=shrink),
    "g24r16": lambda y, x, s, o, shrink: _refine(y, x, s, o, radius=16, group=24,
                                                 shrink=shrink),
    "iter2": lambda y, x, s, o, shrink: _refine(y, _refine(y, x, s, o, shrink=shrink), s, o,
                                                shrink=shrink),
    "b6s2": lambda y, x, s, o, shrink: _refine(y, x, s, o, block=6, step=2, shrink=shrink),
    "b6s3": lambda y, x, s, o, shrink: _refine(y, x, s, o, block=6, step=3, shrink=shrink),
    "b8s2": lambda y, x, s, o, shrink: _refine(y, x, s, o, step=2, shrink=shrink),
    "avg86": lambda y, x, s, o, shrink: 0.5 * (_refine(y, x, s, o, shrink=shrink)
                                               + _refine(y, x, s, o, block=6, shrink=shrink)),
    "avg8_6s2": lambda y, x, s, o, shrink: 0.5 * (
        _refine(y, x, s, o, shrink=shrink) + _refine(y, x, s, o, block=6, step=2, shrink=shrink)),
    "avg8_10": lambda y, x, s, o, shrink: 0.5 * (_refine(y, x, s, o, shrink=shrink)
                                                 + _refine(y, x, s, o, block=10, shrink=shrink)),
}
_first_stage: dict = {}  # the last hard-thresholding stage computed: its key and output


def _bm3d_first_stage(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """BM3D's hard-thresholding stage of ``y`` (the last one computed is reused)."""
    import bm3d

    key = (hashlib.sha1(y.numpy().tobytes()).hexdigest(), sigma)
    if _first_stage.get("key") != key:
        out = bm3d.bm3d(y.numpy().astype(np.float64), sigma_psd=sigma,
                        stage_arg=bm3d.BM3DStages.HARD_THRESHOLDING)
        _first_stage.update(key=key, out=torch.from_numpy(np.asarray(out, np.float32)))
    return _first_stage["out"]


def _pilot_mix(a: float):
    return lambda y, x, s, o, shrink: _refine(
        y, (1 - a) * x + a * _bm3d_first_stage(y, s), s, o, shrink=shrink)


def _output_mix(a: float):
    return lambda y, x, s, o, shrink: (1 - a) * _refine(y, x, s, o, shrink=shrink) + a * x


_full: dict = {}


def _bm3d_full(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """BM3D, both stages, of ``y`` (the last one computed is reused)."""
    import bm3d

    key = (hashlib.sha1(y.numpy().tobytes()).hexdigest(), sigma)
    if _full.get("key") != key:
        out = bm3d.bm3d(y.numpy().astype(np.float64), sigma_psd=sigma)
        _full.update(key=key, out=torch.from_numpy(np.asarray(out, np.float32)))
    return _full["out"]


def _bm3d_mix(a: float):
    return lambda y, x, s, o, shrink: ((1 - a) * _refine(y, x, s, o, shrink=shrink)
                                       + a * _bm3d_full(y, s))


VARIANTS.update({"bm3d30": _bm3d_mix(0.3), "bm3d50": _bm3d_mix(0.5)})
VARIANTS.update({"ht30": _pilot_mix(0.3), "ht50": _pilot_mix(0.5), "htonly": _pilot_mix(1.0),
                 "out10": _output_mix(0.1), "out20": _output_mix(0.2),
                 "out35": _output_mix(0.35)})
_network_on = inference.network_on
_outputs: dict = {}


def shared_network_on(net, y, tta):
    """The network's output for ``y``, computed once per image for all variants."""
    key = (hashlib.sha1(np.ascontiguousarray(y).tobytes()).hexdigest(), tta, id(net))
    if key not in _outputs:
        _outputs[key] = _network_on(net, y, tta)
    return _outputs[key]


def images(root: Path, kind: str, sigmas: list[float]):
    """(label, model, name, noisy, clean, sigma) for each image of ``kind`` (sigma: the
    Gaussian noise's for set12, else None)."""
    if kind == "set12":
        for sigma in sigmas:
            model = P.pretrained_model(sigma, 255.0).with_options(wiener=True)
            for i in range(12):
                name = f"{i + 1:02d}"
                clean = np.asarray(Image.open(root / "set12" / f"{name}.png").convert("L"),
                                   np.float32)
                noisy = simulate(clean, NoiseParams("gaussian", sigma), seed=i)
                yield f"set12_sigma{sigma:g}", model, name, noisy, clean, sigma
        return
    for group in L.groups(root, kind):
        model, _ = P.bind(P.unbound_model(), group.noisy)
        model = model.with_options(wiener=True)
        for name, noisy, clean in zip(group.names, group.noisy, group.clean, strict=True):
            yield kind, model, name, noisy, clean, None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("--kinds", default="fmd,twophoton,w2s", help="also: set12")
    p.add_argument("--sigmas", default="25,50", help="Gaussian sigmas for set12")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--prior", type=Path, help="a prior file (scripts/pretrain.py --export) "
                   "for both routes instead of the shipped ones")
    p.add_argument("--out", type=Path, default=HERE / "results" / "wiener_variants.json")
    args = p.parse_args(argv)
    if args.prior is not None:  # what load_prior reads
        P.PRIOR_FILES = dict.fromkeys(P.PRIOR_FILES, args.prior.resolve())
    for route, path in P.PRIOR_FILES.items():
        steps = P.load_prior(route=route).provenance.get("steps")
        print(f"prior ({route} route): {path}, {steps} steps", flush=True)
    torch.set_num_threads(args.threads)
    chosen = {v: VARIANTS[v] for v in args.variants.split(",")}
    sigmas = [float(v) for v in args.sigmas.split(",")]
    inference.network_on = shared_network_on
    results: dict[str, list] = {}
    for kind in args.kinds.split(","):
        for label, model, name, noisy, clean, sigma in images(args.data, kind, sigmas):
            row: dict = {"image": name}
            for variant, step in chosen.items():
                inference.refine = step  # what denoise_plane calls after Tweedie's
                t0 = time.perf_counter()
                out = denoise(noisy, model)
                took = time.perf_counter() - t0
                m = L.metrics(clean, out)
                row[variant] = (m["psnr"], took, m["psnr_matched"])
            inference.refine = _refine
            _outputs.clear()
            if sigma is not None:
                import bm3d

                t0 = time.perf_counter()
                out = bm3d.bm3d(noisy.astype(np.float64), sigma_psd=sigma)
                took = time.perf_counter() - t0
                m = L.metrics(clean, out)
                row["bm3d"] = (m["psnr"], took, m["psnr_matched"])
            results.setdefault(label, []).append(row)
            print(label, row, flush=True)
    L.write_variant_results(args.out, results, 3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
