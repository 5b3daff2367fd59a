"""The score network: a small 2D U-Net whose output takes both signs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))


class ScoreUNet(nn.Module):
    """U-Net mapping a 1-channel image to a residual of the same shape (any sign): the
    correction that the score parameterisation of ``score.py`` turns into the score, zero
    at initialisation (the last layer, a plain convolution, is zeroed).

    ``unshuffle`` > 1 folds pixel blocks into channels first (lossless), so every
    convolution runs on ``1/unshuffle**2`` of the pixels: the CPU-friendly setting.
    ``stride`` > 1 (noise correlated between neighbouring pixels) splits the image into
    ``stride**2`` sub-images of every ``stride``-th pixel, each denoised as an image of its
    own: within one the noise is (nearly) independent again, as Tweedie's formula needs; it
    has no weights. ``in_channels`` > 1 widens only the first layer: ``ConditionedUNet``
    appends a noise-level channel inside ``_unet``; ``forward`` still takes one channel.
    """

    def __init__(self, width: int = 32, depth: int = 3, unshuffle: int = 2, stride: int = 1,
                 in_channels: int = 1) -> None:
        super().__init__()
        if width < 1 or depth < 1 or unshuffle < 1 or stride < 1:
            raise ValueError("width, depth, unshuffle and stride must be positive")
        self.depth = depth
        self.unshuffle = unshuffle
        self.stride = stride
        c0 = unshuffle * unshuffle
        widths = [width * min(2**i, 4) for i in range(depth + 1)]
        self.head = _block(in_channels * c0, widths[0])
        self.down = nn.ModuleList(_block(widths[i], widths[i + 1]) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                for i in range(depth))
        self.merge = nn.ModuleList(_block(2 * widths[i], widths[i]) for i in range(depth))
        self.tail = nn.Conv2d(widths[0], c0, 1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        self.shuffle = nn.PixelShuffle(unshuffle) if unshuffle > 1 else nn.Identity()
        self.fold = nn.PixelUnshuffle(unshuffle) if unshuffle > 1 else nn.Identity()

    @property
    def multiple(self) -> int:
        """Spatial sizes must be multiples of this number."""
        return self.stride * self.unshuffle * 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        if s == 1:
            return self._unet(x)
        b, _, height, width = x.shape
        sub = F.pixel_unshuffle(x, s).reshape(b * s * s, 1, height // s, width // s)
        if x.is_contiguous(memory_format=torch.channels_last):
            sub = sub.contiguous(memory_format=torch.channels_last)
        out = self._unet(sub).reshape(b, s * s, height // s, width // s)
        return F.pixel_shuffle(out, s)

    def _unet(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(self.fold(x))
        skips = []
        for block in self.down:
            skips.append(h)
            h = block(self.pool(h))
        for i in reversed(range(self.depth)):
            h = self.merge[i](torch.cat([self.up[i](h), skips[i]], dim=1))
        return self.shuffle(self.tail(h))


#: The noise channel of a ConditionedUNet holds tau / COND_REF (values of order 1).
COND_REF = 0.1


class ConditionedUNet(ScoreUNet):
    """A ScoreUNet whose input gains a noise-level channel and whose residual is tau * output.
    ``tau`` (``set_tau``: a number, or one per batch item) is the input's total noise std in
    scaled intensities; a non-persistent buffer: a model file stores the weights, and the
    noise the model denoises sets tau when it is built."""

    def __init__(self, width: int = 24, depth: int = 3, unshuffle: int = 2,
                 stride: int = 1) -> None:
        super().__init__(width, depth, unshuffle, stride, in_channels=2)
        self.register_buffer("tau", torch.full((1, 1, 1, 1), 0.1), persistent=False)

    def set_tau(self, tau: float | torch.Tensor) -> ConditionedUNet:
        t = torch.as_tensor(tau, dtype=torch.float32, device=self.tau.device)
        self.tau = t.reshape(-1, 1, 1, 1)
        return self

    def _unet(self, x: torch.Tensor) -> torch.Tensor:
        tau = self.tau.to(x.dtype)
        if tau.shape[0] not in (1, x.shape[0]):
            raise ValueError("one tau per batch item, or one for all")
        cond = (tau / COND_REF).expand(x.shape[0], 1, *x.shape[-2:])
        inp = torch.cat([x, cond], dim=1)
        if x.is_contiguous(memory_format=torch.channels_last):
            inp = inp.contiguous(memory_format=torch.channels_last)
        return super()._unet(inp) * tau
