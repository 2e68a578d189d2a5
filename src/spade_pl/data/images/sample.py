"""One super-resolution sample: low-resolution measurements, the high-resolution ground truth and the operator
between them."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spade_pl.physics.sr import Downsampling


class SRSample(NamedTuple):
    """One image (batched by the default collate); implements the batch protocol of :mod:`spade_pl.physics.sample`."""

    lr: Tensor  # (C, h, w) low-resolution measurements y
    target: Tensor  # (C, H, W) high-resolution ground truth in [0, 1]
    kernel: Tensor  # (kh, kw) blur kernel
    scale: int
    fname: str
    slice_num: int  # always 0: an image is a one-slice "volume"

    @property
    def y(self) -> Tensor:
        return self.lr

    def physics(self) -> Downsampling:
        mask = torch.ones_like(self.lr[:, :1], dtype=torch.bool)  # every low-resolution pixel is measured
        scale = int(self.scale[0]) if isinstance(self.scale, Tensor) else int(self.scale)
        return Downsampling(kernel=self.kernel, scale=scale, mask=mask, channels=self.lr.shape[1])

    def image(self, x: Tensor) -> Tensor:
        return x

    def baseline(self) -> Tensor:
        """Bicubic up-sampling of the measurements: the classical baseline of super-resolution."""
        return self.physics().bicubic_upsampling(self.lr)
