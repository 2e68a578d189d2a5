"""A third inverse problem outside spade-pl: image inpainting with random pixel masks, ``y = M ⊙ x + n``.

Only the contracts: a physics (``Physics``), a sample (the batch protocol) and a datamodule that yields it,
here on the embedded images of the super-resolution problem (their ground-truth images, measured through a
random mask instead of a decimation). The unchanged pipeline then pre-trains, prunes, fine-tunes (any
strategy, self-supervised too: the mask splits, and EI learns from the rotations a fixed mask is not
equivariant to), tests, benchmarks and reports:

    PYTHONPATH=examples python -m spade_pl hydra.searchpath=[file://examples/conf] problem=inpainting
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from spade_pl.core.errors import require
from spade_pl.data.images.datamodule import ImageDataModule
from spade_pl.data.images.sample import SRSample
from spade_pl.physics.base import CLOSED_FORM_PROX, DataTerm, Physics


@dataclass(frozen=True)
class Inpainting(Physics):
    """``A x = M ⊙ x`` with ``M`` ``(B, 1, H, W)`` bool (True: the pixel is measured); self-adjoint."""

    mask: Tensor
    channels: int = 1
    provides = frozenset({CLOSED_FORM_PROX})

    def A(self, x: Tensor) -> Tensor:  # noqa: N802 (operator notation)
        return x * self.mask

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        return y * self.mask

    def data_term(self, y: Tensor) -> DataTerm:
        return InpaintingDataTerm(self, y)

    def apply_mask(self, y: Tensor) -> Tensor:
        return y * self.mask

    def with_mask(self, mask: Tensor) -> Inpainting:
        return replace(self, mask=mask)

    def split(self, fraction: float, generator: torch.Generator | None = None) -> tuple[Inpainting, Inpainting]:
        """The measured pixels in two disjoint parts: ``1 - fraction`` of them kept, ``fraction`` held out."""
        draw = torch.rand(self.mask.shape, generator=generator).to(self.mask.device)
        held = self.mask & (draw < fraction)
        return self.with_mask(self.mask & ~held), self.with_mask(held)


class InpaintingDataTerm(DataTerm):
    """The proximal step in closed form: ``argmin_x ‖M x − y‖² + α ‖x − z‖² = (M y + α z) / (M + α)``."""

    def prox(self, z: Tensor, alpha: Tensor | float, iterations: int = 30) -> Tensor:
        alpha = torch.as_tensor(alpha, dtype=z.dtype, device=z.device).reshape(-1, *[1] * (z.dim() - 1))
        mask = self.physics.mask.to(z.dtype)
        return (mask * self.y + alpha * z) / (mask + alpha)


class InpaintingSample(NamedTuple):
    """One image (batched by the default collate); the batch protocol of ``spade_pl.physics.sample``."""

    y: Tensor  # (C, H, W) the measured pixels, 0 elsewhere
    mask: Tensor  # (1, H, W) bool
    target: Tensor  # (C, H, W) ground truth in [0, 1]
    fname: str
    slice_num: int

    def physics(self) -> Inpainting:
        return Inpainting(mask=self.mask, channels=self.y.shape[1])

    def image(self, x: Tensor) -> Tensor:
        return x

    def baseline(self) -> Tensor:
        """The measured pixels, the holes left at 0: what an inpainting network starts from."""
        return self.y


def _name_seed(name: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{name}".encode()).digest()[:4], "little")


class MaskedImages(Dataset):
    """The ground-truth images (or training patches) of an image dataset, measured through a random pixel
    mask: a new mask per training sample, a fixed one per image name for validation and test."""

    def __init__(self, images: Dataset, fraction: float, noise_std: float, seed: int, training: bool):
        self.images, self.fraction, self.noise_std = images, fraction, noise_std
        self.seed, self.training = seed, training

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> InpaintingSample:
        sample: SRSample = self.images[index]
        target = sample.target
        # training: the global generator, which spade-pl seeds per sample; evaluation: one mask per image
        generator = None if self.training else torch.Generator().manual_seed(_name_seed(sample.fname, self.seed))
        mask = torch.rand((1, *target.shape[-2:]), generator=generator) < self.fraction
        noise = torch.randn(target.shape, generator=generator) * self.noise_std
        return InpaintingSample((target + noise) * mask, mask, target, sample.fname, 0)


class InpaintingDataModule(ImageDataModule):
    """The image folders of ``ImageDataModule`` (embedded default: scikit-image's images), each image measured
    at ``fraction`` of its pixels with noise ``noise_std``."""

    physics_type = Inpainting

    def __init__(self, *args, fraction: float = 0.3, **kwargs):
        super().__init__(*args, **kwargs)
        require(0 < fraction < 1, f"problem.fraction={fraction} is invalid; allowed: 0 < fraction < 1")
        self.fraction = float(fraction)

    def build_dataset(self, split: str, purpose: str) -> MaskedImages:
        images = super().build_dataset(split, purpose)
        return MaskedImages(images, self.fraction, self.noise_std, self.seed, training=purpose == "train")
