"""Transform groups for equivariant imaging, in plain torch (no torchvision), for any image shape.

EI needs transforms the forward operator is *not* equivariant to: rotations for Cartesian MRI (not integer
shifts, to which a Cartesian mask is equivariant); for super-resolution both rotations and shifts that are
not multiples of the scale (each moves the image against the decimation grid). Every transform keeps the
image shape, so the sampling mask of the data applies unchanged to the transformed image:

- multiples of 90° are exact: the image is zero-padded to a square, turned with ``rot90`` and centre-cropped
  back (on square images, a plain ``rot90``); no interpolation, nothing blurred;
- other angles are bilinear rotations about the centre; the corners that come from outside the image are
  zero, and :meth:`Rotations.valid` marks the pixels that hold rotated content (losses weight by it);
- shifts are circular (``torch.roll``): exact, every pixel valid.

A transform object owns its randomness: training draws new angles every step, evaluation (validation,
checkpoint selection) always the same ones, so the ground-truth-free validation loss is comparable across
epochs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor

from spade_pl.core.errors import require

Shift = tuple[int, int]

EXACT = (90.0, 180.0, 270.0)


def _pad_to_square(images: Tensor) -> tuple[Tensor, tuple[int, int, int, int]]:
    height, width = images.shape[-2:]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    padding = (left, side - width - left, top, side - height - top)
    return F.pad(images, padding), padding


def rotate(images: Tensor, degrees: float) -> Tensor:
    """Rotate ``(B, C, H, W)`` counter-clockwise about the centre, keeping ``H x W``; outside is zero."""
    height, width = images.shape[-2:]
    if degrees % 90 == 0:
        turns = int(degrees // 90) % 4
        if height == width or turns == 2:
            return torch.rot90(images, k=turns, dims=(-2, -1))
        square, (left, _, top, _) = _pad_to_square(images)
        turned = torch.rot90(square, k=turns, dims=(-2, -1))
        return turned[..., top : top + height, left : left + width]
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    aspect = height / width  # a rigid rotation in pixel units on non-square images
    matrix = torch.tensor(
        [[cos, -sin * aspect, 0.0], [sin / aspect, cos, 0.0]], dtype=images.dtype, device=images.device
    )
    grid = F.affine_grid(matrix.expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class TransformGroup(ABC):
    """``num_transforms`` draws per step: new ones every training step, always the same ones in evaluation."""

    def __init__(self, num_transforms: int = 1):
        require(int(num_transforms) >= 1, f"num_transforms={num_transforms} is invalid; allowed: >= 1")
        self.num_transforms = int(num_transforms)

    def sample(self, training: bool) -> list:
        generator = None if training else torch.Generator().manual_seed(0)
        return [self.draw(generator) for _ in range(self.num_transforms)]

    @abstractmethod
    def draw(self, generator: torch.Generator | None):
        """One element of the group (drawn with ``generator``; ``None``: the global generator)."""

    @abstractmethod
    def apply(self, planes: Tensor, g) -> Tensor:
        """Transform real image planes ``(B, N, H, W)`` (a physics maps its images to planes and back)."""

    def valid(self, planes: Tensor, g) -> Tensor:
        """``(B, 1, H, W)`` weights: 1 where the transformed image holds content of the original, else 0."""
        return torch.ones_like(planes[:, :1])


class Rotations(TransformGroup):
    """Rotations by ``angles`` (degrees); ``None`` = any integer in 1..359.

    The default group ``[90, 180, 270]`` is exact on every image shape (see the module docstring).
    """

    def __init__(self, angles: list[float] | None = EXACT, num_transforms: int = 1):
        super().__init__(num_transforms)
        require(
            angles is None or (len(angles) > 0 and all(float(a) % 360 != 0 for a in angles)),
            f"angles={angles} is invalid; allowed: null (random integer degrees) or a list of angles that are "
            f"not multiples of 360 (the identity teaches equivariance nothing)",
        )
        self.angles = [float(a) for a in angles] if angles is not None else None

    def draw(self, generator: torch.Generator | None) -> float:
        if self.angles is None:
            return float(torch.randint(1, 360, (1,), generator=generator))
        return self.angles[int(torch.randint(0, len(self.angles), (1,), generator=generator))]

    def apply(self, planes: Tensor, degrees: float) -> Tensor:
        return rotate(planes, degrees)

    def valid(self, planes: Tensor, degrees: float) -> Tensor:
        return (rotate(torch.ones_like(planes[:, :1]), degrees) > 0.999).to(planes.dtype)


class Shifts(TransformGroup):
    """Circular shifts ``(rows, columns)`` with ``0 <= rows, columns < period``, never (0, 0).

    Circular shifts are exact on any shape. An operator that decimates by ``s`` is equivariant to shifts by
    multiples of ``s`` only, so ``period = s`` reaches every distinct sub-grid and wastes no draw on a shift
    the operator is equivariant to.
    """

    def __init__(self, period: int = 2, num_transforms: int = 1):
        super().__init__(num_transforms)
        require(int(period) >= 2, f"period={period} is invalid; allowed: >= 2")
        self.shifts: list[Shift] = [(r, c) for r in range(int(period)) for c in range(int(period)) if (r, c) != (0, 0)]

    def draw(self, generator: torch.Generator | None) -> Shift:
        return self.shifts[int(torch.randint(0, len(self.shifts), (1,), generator=generator))]

    def apply(self, planes: Tensor, shift: Shift) -> Tensor:
        return torch.roll(planes, shifts=shift, dims=(-2, -1))


class Union(TransformGroup):
    """Each draw comes from one of ``groups``, chosen uniformly (e.g. rotations and shifts for SR)."""

    def __init__(self, groups: list[TransformGroup], num_transforms: int = 1):
        super().__init__(num_transforms)
        require(len(groups) > 0, "a transform union needs at least one group")
        self.groups = list(groups)

    def draw(self, generator: torch.Generator | None) -> tuple[int, object]:
        i = int(torch.randint(0, len(self.groups), (1,), generator=generator))
        return i, self.groups[i].draw(generator)

    def apply(self, planes: Tensor, g: tuple[int, object]) -> Tensor:
        return self.groups[g[0]].apply(planes, g[1])

    def valid(self, planes: Tensor, g: tuple[int, object]) -> Tensor:
        return self.groups[g[0]].valid(planes, g[1])
