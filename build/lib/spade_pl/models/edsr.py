"""EDSR-style residual CNN: the image prior of the DEQ (SPADE reference: 64 features, 13 residual blocks)."""

from __future__ import annotations

from torch import Tensor, nn

from spade_pl.core.errors import require


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=True)


class ResidualBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3 plus an identity skip (no normalisation, no residual scaling)."""

    def __init__(self, feats: int):
        super().__init__()
        self.body = nn.Sequential(conv3x3(feats, feats), nn.ReLU(), conv3x3(feats, feats))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class EDSR(nn.Module):
    """EDSR without up-sampling: head conv, ``num_blocks`` residual blocks + one conv with a global skip, tail conv.

    Input and output are ``(B, in_channels, H, W)`` / ``(B, out_channels, H, W)`` (2 = real, imaginary).
    The paper size ``feats=64, num_blocks=13`` has exactly 999,426 parameters: every conv3x3 has
    ``9 * c_in * c_out`` weights plus ``c_out`` biases, so

    - head 2 -> 64: 9*2*64 + 64 = 1,216
    - 13 blocks of two 64 -> 64 convs: 26 * (9*64*64 + 64) = 26 * 36,928 = 960,128
    - body conv 64 -> 64: 36,928
    - tail 64 -> 2: 9*64*2 + 2 = 1,154

    1,216 + 960,128 + 36,928 + 1,154 = 999,426 (the reference's 999,429 adds the DEQ's scalars).
    The residual and global skips tie the head's and every block's output channels into one
    dependency group, so structured pruning removes the same channels from all of them.
    """

    def __init__(self, in_channels: int = 2, out_channels: int = 2, feats: int = 64, num_blocks: int = 13):
        super().__init__()
        require(int(feats) >= 1, f"network.model.feats={feats} is invalid; allowed: integers >= 1")
        require(int(num_blocks) >= 0, f"network.model.num_blocks={num_blocks} is invalid; allowed: integers >= 0")
        self.head = conv3x3(in_channels, feats)
        self.body = nn.Sequential(*(ResidualBlock(feats) for _ in range(num_blocks)), conv3x3(feats, feats))
        self.tail = conv3x3(feats, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        features = self.head(x)
        return self.tail(features + self.body(features))
