"""Bounds on the Wiener step, with references (development): what the step would give with
a better pilot, or told the noise's true spectrum. The shipped prior, zero-shot, bound to
each model group's estimated noise (as ``denoise --model pretrained``), 8-fold average, then
the step with one of:

- ``network``: no step (the pilot itself, through the inverse and the local mean);
- ``base``: the shipped step (the network's Tweedie estimate as its pilot);
- ``pilot20`` / ``pilot50`` / ``pilot100``: the pilot moved 0.2 / half / all of the way to
  the clean reference (put through the same transform and scale): a pilot with 0.8 / half
  of its error, or none;
- ``spectrum``: the gain's noise variance per 8 x 8 DCT coefficient, the true one: measured
  on the noise itself, the transformed capture less the transformed reference, with its
  local mean (a Gaussian of std 6 px) removed, normalised to a mean of 1.

PSNR dB (0-255) and the intensity-matched PSNR (``lowphoton.matched_psnr``) per image and
the means, on the images of ``benchmarks/lowphoton.py``:

    python benchmarks/wiener_bounds.py ../shared/data --kinds fmd,twophoton \\
        --out benchmarks/results/wiener_bounds.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from napari_noise2score import denoise
from napari_noise2score.core import inference, wiener
from napari_noise2score.core import prior as P

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lowphoton as L  # noqa: E402

VARIANTS = ("network", "base", "pilot20", "pilot50", "pilot100", "spectrum")


class SpectralSigma(float):
    """A noise std that, multiplied by the step's shrink factor, becomes a per-coefficient
    (block x block) std: how ``spectrum`` reaches the gain inside ``wiener.refine`` without
    a second copy of the step (Python tries a float subclass's reflected product first)."""

    spectrum: torch.Tensor

    def __new__(cls, value: float, spectrum: torch.Tensor) -> SpectralSigma:
        out = super().__new__(cls, value)
        out.spectrum = spectrum
        return out

    def __rmul__(self, other: float) -> torch.Tensor:
        return other * float(self) * self.spectrum.sqrt()


def block_spectrum(noise: np.ndarray, block: int = wiener.BLOCK) -> np.ndarray:
    """Mean squared 2D DCT coefficients of ``noise`` over its blocks, normalised to mean 1."""
    n = noise - gaussian_filter(noise, 6)
    h, w = (n.shape[0] // block) * block, (n.shape[1] // block) * block
    b = n[:h, :w].reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3)
    c = wiener.dct_matrix(block, torch.float64).numpy()
    coef = np.einsum("ij,abjk,lk->abil", c, b, c)
    v = (coef**2).reshape(-1, block, block).mean(0)
    return v / v.mean()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("--kinds", default="fmd,twophoton")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "results" / "wiener_bounds.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    shipped_step = inference._wiener_step
    state: dict = {}

    def step(y, x, sigma, origin, shrink):
        if state.get("towards") is not None:  # the pilot moved towards the reference
            a, target = state["towards"]
            x = (1 - a) * x + a * target
        if state.get("spectrum") is not None:
            sigma = SpectralSigma(sigma, state["spectrum"])
        return shipped_step(y, x, sigma, origin, shrink)

    inference._wiener_step = step
    results: dict[str, list] = {}
    for kind in args.kinds.split(","):
        for group in L.groups(args.data, kind):
            model, _ = P.bind(P.unbound_model(), group.noisy)
            model = model.with_options(wiener=True)
            for name, noisy, clean in zip(group.names, group.noisy, group.clean, strict=True):
                row: dict = {"image": name}
                # the plane's own model: its transform and scale (per-plane noise included)
                plane_model = inference.TiledDenoiser(model, noisy.shape, "YX").model_for(
                    noisy, ())
                reference = plane_model.to_scaled(clean.astype(np.float32))
                noise = (plane_model.to_scaled(noisy).astype(np.float64) - reference)
                for variant in VARIANTS:
                    state.clear()
                    if variant.startswith("pilot"):
                        state["towards"] = (int(variant[5:]) / 100, reference)
                    elif variant == "spectrum":
                        state["spectrum"] = torch.from_numpy(
                            block_spectrum(noise).astype(np.float32))
                    used = model.with_options(wiener=False) if variant == "network" else model
                    m = L.metrics(clean, denoise(noisy, used))
                    row[variant] = (m["psnr"], m["psnr_matched"])
                results.setdefault(kind, []).append(row)
                print(kind, row, flush=True)
    inference._wiener_step = shipped_step
    L.write_variant_results(args.out, results, 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
