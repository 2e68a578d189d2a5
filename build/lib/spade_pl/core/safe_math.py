"""Norms whose gradient stays finite where they are 0."""

from __future__ import annotations

import torch
from torch import Tensor


def root_sum_of_squares(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """``sqrt(Σ x²)`` over ``dims`` (a magnitude, an RSS, a norm per pixel) with gradient 0 where the sum is 0.

    ``sqrt`` differentiates to 0/0 = NaN at 0 (``fastmri.complex_abs``, ``rss_complex``, ``vector_norm``), and an
    output that is exactly 0 is what coil maps that are zero outside the object make (ESPIRiT with its default
    crop): every such pixel would poison every gradient of the first backward pass."""
    squared = x.square().sum(dim=dims)
    nonzero = squared > 0
    return torch.where(nonzero, torch.where(nonzero, squared, 1.0).sqrt(), 0.0)
