"""Measurement operators (the physics A of y = A x + n) and k-space sampling masks."""

from spade_pl.physics.masks import build_mask_func
from spade_pl.physics.mri import MultiCoilMRI

__all__ = ["MultiCoilMRI", "build_mask_func"]
