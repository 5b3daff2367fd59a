"""Training patches: the patch size for a network and images, and the random patch
sampler (below both ``training`` and ``finetune``, which draw from it)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .errors import Noise2ScoreError
from .network import ScoreUNet


class PatchSampler:
    """Random square patches, with flips and 90-degree turns, from 2D planes of any sizes."""

    def __init__(self, planes: Sequence[np.ndarray], patch: int, seed: int = 0) -> None:
        self.planes = [p for p in planes if min(p.shape[-2:]) >= patch]
        if not self.planes:
            raise Noise2ScoreError(f"no image plane is at least {patch}x{patch} pixels")
        self.patch = patch
        sizes = np.array([(p.shape[-2] - patch + 1) * (p.shape[-1] - patch + 1)
                          for p in self.planes], dtype=np.float64)
        self.weights = sizes / sizes.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int) -> np.ndarray:
        """(batch, C, p, p) patches; planes are (Y, X) (C = 1) or (C, Y, X)."""
        p, rng = self.patch, self.rng
        channels = 1 if self.planes[0].ndim == 2 else self.planes[0].shape[0]
        out = np.empty((batch, channels, p, p), dtype=np.float32)
        for i, k in enumerate(rng.choice(len(self.planes), size=batch, p=self.weights)):
            plane = self.planes[k]
            y = rng.integers(0, plane.shape[-2] - p + 1)
            x = rng.integers(0, plane.shape[-1] - p + 1)
            crop = np.rot90(plane[..., y : y + p, x : x + p], rng.integers(4), axes=(-2, -1))
            out[i] = crop[..., ::-1] if rng.integers(2) else crop
        return out


def choose_patch(planes: Sequence[np.ndarray], wanted: int, net: ScoreUNet) -> int:
    """The patch size: ``wanted`` rounded to the network's multiple, shrunk for small images."""
    largest = max(min(p.shape[-2:]) for p in planes)
    multiple = net.multiple
    patch = min(wanted, largest) // multiple * multiple
    if patch >= multiple:
        return patch
    fixed = multiple // 2**net.depth  # the stride and unshuffle factors
    deepest = int(math.log2(largest // fixed)) if largest >= 2 * fixed else 0
    fix = f"choose a depth of {deepest} or less" if deepest >= 1 else "use larger images"
    raise Noise2ScoreError(
        f"the images are too small for a network of depth {net.depth}: the largest plane "
        f"is {largest} pixels on its short side, and this network needs at least "
        f"{fixed} x 2^{net.depth} pixels; {fix}")
