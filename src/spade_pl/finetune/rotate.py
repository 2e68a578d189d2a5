"""Image rotations in plain torch (no torchvision): exact for multiples of 90°, bilinear otherwise."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def rotate(images: Tensor, degrees: float) -> Tensor:
    """Rotate ``(B, C, H, W)`` images counter-clockwise about their centre; corners outside are zero."""
    if degrees % 90 == 0:
        return torch.rot90(images, k=int(degrees // 90) % 4, dims=(-2, -1))
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    height, width = images.shape[-2:]
    aspect = height / width  # keep the rotation rigid in pixel units for non-square images
    matrix = torch.tensor(
        [[cos, -sin * aspect, 0.0], [sin / aspect, cos, 0.0]], dtype=images.dtype, device=images.device
    )
    grid = F.affine_grid(matrix.expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotate_complex(x: Tensor, degrees: float) -> Tensor:
    """Rotate complex images ``(B, ..., H, W, 2)`` (an image or a stack of coil maps) in the image plane."""
    lead, (height, width) = x.shape[:-3], x.shape[-3:-1]
    planes = x.movedim(-1, -3).reshape(lead[0], -1, height, width)
    rotated = rotate(planes, degrees)
    new_h, new_w = rotated.shape[-2:]
    return rotated.reshape(*lead, 2, new_h, new_w).movedim(-3, -1)
