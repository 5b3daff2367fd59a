"""A nonlocal empirical Wiener step after Tweedie's (docs/algorithm.md, "Wiener step").

Where the noise Tweedie's step assumed is white Gaussian of a known std (Gaussian noise, and
the Anscombe route after its transform), the denoised image is a pilot for a second estimate:
blocks similar to each reference block are found on the pilot, each group of blocks is
transformed (a 2D DCT per block, a DCT across the group), the *noisy* group's coefficients
are weighted by pilot^2 / (pilot^2 + (shrink sigma)^2), transformed back, and every block is
added into the image with the group's weight 1 / sum(w^2). ``shrink`` > 1 because the pilot's
own error adds to its coefficients' energy, so pilot^2 overstates the signal's; its values
are measured per route (docs/algorithm.md, "Wiener step"). Pure torch, deterministic, tiled-safe:
reference blocks sit on a grid anchored to the plane (``origin``), and one output pixel
depends on the inputs within ``REACH`` pixels only.
"""

from __future__ import annotations

import math

import torch

BLOCK = 8  # block side, pixels
STEP = 3  # reference blocks every STEP pixels
RADIUS = 12  # the search window around a reference block: offsets up to RADIUS
GROUP = 16  # blocks per group (the reference among them)
CHUNK = 4096  # reference blocks transformed at once (bounds the memory)
#: how far (pixels) an input pixel can move the output: a group's reference lies within
#: RADIUS + BLOCK of the pixels its blocks cover, and its search reads RADIUS + BLOCK more
REACH = 2 * (RADIUS + BLOCK)
#: the noise std the gain assumes, as a multiple of the noise's, per route: best of 1, 1.25,
#: 1.5, 2 (2.5) on Set12 Gaussian noise (zero-shot prior) and on the low-photon images
#: (Anscombe route), where the pilot's error is larger (docs/algorithm.md, "Wiener step")
SHRINK_GAUSSIAN = 1.25
SHRINK_ANSCOMBE = 1.5


def dct_matrix(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal DCT-II matrix (rows are the basis vectors)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    m = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.to(dtype)


def reference_positions(n: int, block: int, step: int, origin: int) -> torch.Tensor:
    """Block origins along one axis: every ``step`` pixels of the plane's grid (``origin``
    is this region's offset in the plane), plus both ends so every pixel is covered."""
    first = (-origin) % step
    pos = list(range(first, n - block + 1, step))
    return torch.tensor(sorted({0, n - block, *pos}), dtype=torch.long)


def _distances(pilot: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, radius: int,
               block: int) -> torch.Tensor:
    """Mean squared pilot difference between each reference block (rows ``ys`` x columns
    ``xs``, row-major) and the block at every offset of the search window: (references,
    offsets); +inf where that block leaves the plane."""
    h, w = pilot.shape
    side = 2 * radius + 1
    rows = ys[:, None] + torch.arange(block, device=pilot.device)  # (ny, block)
    out = torch.empty((ys.numel() * xs.numel(), side * side), dtype=pilot.dtype,
                      device=pilot.device)
    reference = pilot[rows]  # (ny, block, w), the same for every offset
    # each block's sum taken over its own pixels in one order (not a running sum along the
    # row): a block's distance does not depend on where the plane or tile begins
    cols = xs[:, None] + torch.arange(block, device=pilot.device)  # (nx, block)
    for k in range(side * side):
        dy, dx = k // side - radius, k % side - radius
        shifted = torch.roll(pilot, shifts=(-dy, -dx), dims=(0, 1))
        band = ((reference - shifted[rows]) ** 2).sum(dim=1)  # (ny, w): block-high sums
        box = band[:, cols].sum(dim=2) / (block * block)  # (ny, nx)
        oky = (ys + dy >= 0) & (ys + dy <= h - block)
        okx = (xs + dx >= 0) & (xs + dx <= w - block)
        box = torch.where(oky[:, None] & okx[None, :], box, torch.full_like(box, math.inf))
        out[:, k] = box.reshape(-1)
    return out


def refine(noisy: torch.Tensor, pilot: torch.Tensor, sigma: float,
           origin: tuple[int, int] = (0, 0), block: int = BLOCK, step: int = STEP,
           radius: int = RADIUS, group: int = GROUP, shrink: float = 1.0) -> torch.Tensor:
    """The Wiener estimate of the 2D ``noisy`` image (white Gaussian noise of std ``sigma``,
    same units) from the ``pilot`` estimate, the gain's noise std ``shrink`` x ``sigma``;
    planes smaller than a block come back as the pilot."""
    h, w = noisy.shape
    if h < block or w < block or not sigma > 0:
        return pilot
    noisy, pilot = noisy.float(), pilot.float()
    ys = reference_positions(h, block, step, origin[0]).to(noisy.device)
    xs = reference_positions(w, block, step, origin[1]).to(noisy.device)
    ry, rx = (g.reshape(-1) for g in torch.meshgrid(ys, xs, indexing="ij"))
    dist = _distances(pilot, ys, xs, radius, block)
    k = min(group, dist.shape[1])
    best = torch.topk(dist, k, dim=1, largest=False).indices
    side = 2 * radius + 1
    cy = ry[:, None] + best // side - radius
    cx = rx[:, None] + best % side - radius
    bad = ~torch.isfinite(torch.gather(dist, 1, best))  # fewer blocks than k in the window
    cy, cx = torch.where(bad, ry[:, None], cy), torch.where(bad, rx[:, None], cx)
    c_block, c_group = dct_matrix(block).to(noisy.device), dct_matrix(k).to(noisy.device)
    inner = torch.arange(block, device=noisy.device)
    num = torch.zeros(h * w, dtype=torch.float32, device=noisy.device)
    den = torch.zeros(h * w, dtype=torch.float32, device=noisy.device)
    for s in range(0, ry.numel(), CHUNK):
        gy, gx = cy[s:s + CHUNK], cx[s:s + CHUNK]
        rows = gy[..., None, None] + inner[:, None]  # (n, k, block, 1)
        cols = gx[..., None, None] + inner[None, :]  # (n, k, 1, block)
        yg, pg = noisy[rows, cols], pilot[rows, cols]  # (n, k, block, block)
        yc, pc = _forward(yg, c_block, c_group), _forward(pg, c_block, c_group)
        gain = pc * pc / (pc * pc + (shrink * sigma) ** 2)
        est = _inverse(gain * yc, c_block, c_group)
        weight = 1.0 / gain.square().sum(dim=(1, 2, 3)).clamp_min(1e-12)
        flat = (rows * w + cols).reshape(-1)
        num.index_add_(0, flat, (est * weight[:, None, None, None]).reshape(-1))
        den.index_add_(0, flat, weight[:, None, None, None].expand_as(est).reshape(-1))
    out = num / den.clamp_min(1e-30)
    return torch.where(den > 0, out, pilot.reshape(-1)).reshape(h, w)


def _forward(g: torch.Tensor, c_block: torch.Tensor, c_group: torch.Tensor) -> torch.Tensor:
    """3D transform of groups (n, k, b, b): DCT of each block, then across the group."""
    g = c_block @ g @ c_block.T
    return torch.einsum("ij,njab->niab", c_group, g)


def _inverse(g: torch.Tensor, c_block: torch.Tensor, c_group: torch.Tensor) -> torch.Tensor:
    g = torch.einsum("ji,njab->niab", c_group, g)
    return c_block.T @ g @ c_block
