"""ResUNet (USRNet's denoiser, without batch norm): residual blocks at every scale, strided-conv down-sampling,
transposed-conv up-sampling, additive skips. A prunable prior: plain convolutions, residual adds that DepGraph
groups, no normalisation layers."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from spade_pl.core.errors import require
from spade_pl.models.edsr import ResidualBlock, conv3x3


class ResUNet(nn.Module):
    """``widths`` per scale (e.g. USRNet's 64/128/256/512), ``blocks`` residual blocks per scale.

    Inputs of any size: padded (replicate) to a multiple of ``2^(scales − 1)`` and cropped back.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        blocks: int = 2,
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        require(
            len(widths) >= 1 and min(widths) >= 1, f"network.model.widths={list(widths)} is invalid; allowed: >= 1 each"
        )
        require(int(blocks) >= 0, f"network.model.blocks={blocks} is invalid; allowed: integers >= 0")
        self.head = conv3x3(in_channels, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(*(ResidualBlock(w) for _ in range(blocks)), nn.Conv2d(w, w_next, kernel_size=2, stride=2))
            for w, w_next in zip(widths[:-1], widths[1:], strict=True)
        )
        self.body = nn.Sequential(*(ResidualBlock(widths[-1]) for _ in range(blocks)))
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(w_next, w, kernel_size=2, stride=2), *(ResidualBlock(w) for _ in range(blocks))
            )
            for w, w_next in zip(widths[:-1], widths[1:], strict=True)
        )
        self.tail = conv3x3(widths[0], out_channels)
        self.multiple = 2 ** (len(widths) - 1)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        skips = [self.head(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        h = self.body(skips[-1])
        for up, skip in zip(reversed(self.up), reversed(skips[1:]), strict=True):
            h = up(h + skip)
        return self.tail(h + skips[0])[..., :height, :width]
