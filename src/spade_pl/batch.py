"""Turning a collated :class:`MRISample` batch into what networks and losses consume."""

from __future__ import annotations

import fastmri
from fastmri.data.transforms import center_crop
from torch import Tensor

from spade_pl.data.transform import MRISample
from spade_pl.physics.mri import MultiCoilMRI, rss_zero_filled


def physics_of(batch: MRISample) -> MultiCoilMRI:
    """The measurement operator of a batch: its masks, its coil maps when the data has them."""
    maps = batch.maps if batch.maps.numel() > 0 else None
    return MultiCoilMRI(mask=batch.mask, maps=maps, num_low_frequencies=batch.num_low_frequencies)


def crop_like(image: Tensor, like: Tensor) -> Tensor:
    """Centre-crop a real image ``(..., H, W)`` to the spatial size of ``like`` (the target's recon size)."""
    return center_crop(image, tuple(like.shape[-2:]))


def magnitude(image: Tensor, like: Tensor) -> Tensor:
    """|complex image| ``(B, H, W)``, centre-cropped to the spatial size of ``like``."""
    return crop_like(fastmri.complex_abs(image), like)


def zero_filled(batch: MRISample) -> Tensor:
    """The zero-filled baseline magnitude (RSS of the measured k-space), cropped like the target."""
    return crop_like(rss_zero_filled(batch.masked_kspace), batch.target)
