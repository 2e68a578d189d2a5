"""Single-image super-resolution: ``y = (k ∗ x)↓s + n`` with circular boundary (USRNet / DPIR conventions).

Images are ``(B, C, H, W)`` real tensors (C = 1 grey or 3 RGB) with ``H`` and ``W`` multiples of the scale
``s``; ``↓s`` keeps the upper-left pixel of each ``s x s`` block; the blur ``k`` is applied as a circular
convolution through the FFT. The adjoint is zero-filling up-sampling followed by the flipped blur. The data
step ``argmin_x ‖A x − y‖² + α ‖x − z‖²`` has a closed form in the Fourier domain (Zhao et al. 2016, used by
USRNet's ``DataNet`` and DPIR's ``data_solution``); a test checks it against conjugate gradients.

Kernels: :func:`gaussian_kernel` (isotropic, σ) and :func:`bicubic_kernel` (the Keys cubic with a = −0.5,
stretched by the scale: what MATLAB's ``imresize`` anti-aliasing applies when it down-scales by ``s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from spade_pl.core.errors import require
from spade_pl.physics.base import CLOSED_FORM_PROX, DataTerm, Physics
from spade_pl.physics.equivariance import Rotations, Shifts, TransformGroup, Union

SCALES = (2, 3, 4)
KERNELS = ("gaussian", "bicubic")


def gaussian_kernel(sigma: float, size: int | None = None) -> Tensor:
    """Normalised isotropic Gaussian ``(size, size)``; default size ``2 ceil(3σ) + 1``."""
    require(sigma > 0, f"blur sigma {sigma} is invalid; allowed: > 0")
    size = size or 2 * math.ceil(3 * sigma) + 1
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = g[:, None] * g[None, :]
    return (kernel / kernel.sum()).float()


def _keys_cubic(t: Tensor, a: float = -0.5) -> Tensor:
    t = t.abs()
    inner = (a + 2) * t**3 - (a + 3) * t**2 + 1
    outer = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return torch.where(t <= 1, inner, torch.where(t < 2, outer, torch.zeros_like(t)))


def bicubic_kernel(scale: int) -> Tensor:
    """The bicubic anti-aliasing kernel of a down-scaling by ``scale``: ``(4s, 4s)``, separable, normalised."""
    size = 4 * scale
    t = (torch.arange(size, dtype=torch.float64) - (size - 1) / 2) / scale
    taps = _keys_cubic(t)
    kernel = taps[:, None] * taps[None, :]
    return (kernel / kernel.sum()).float()


def make_kernel(kind: str, scale: int, sigma: float | None = None) -> Tensor:
    """``kind`` = gaussian (σ; default ``scale / 2``) or bicubic."""
    require(kind in KERNELS, f"blur kernel {kind!r} is unknown; allowed: {', '.join(KERNELS)}")
    if kind == "bicubic":
        return bicubic_kernel(scale)
    return gaussian_kernel(sigma if sigma is not None else scale / 2)


def kernel_otf(kernel: Tensor, shape: tuple[int, int]) -> Tensor:
    """The kernel's transfer function on an ``H x W`` grid (centred at pixel 0: circular convolution)."""
    kh, kw = kernel.shape[-2:]
    padded = torch.zeros(*kernel.shape[:-2], *shape, dtype=kernel.dtype, device=kernel.device)
    padded[..., :kh, :kw] = kernel
    padded = torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(-2, -1))
    return torch.fft.fft2(padded)


def _blocks(a: Tensor, scale: int) -> Tensor:
    """``(..., H, W)`` -> ``(..., H/s, W/s, s²)``: the s x s aliasing copies of each frequency."""
    b = torch.stack(torch.chunk(a, scale, dim=-2), dim=-1)
    return torch.cat(torch.chunk(b, scale, dim=-2), dim=-1)


@dataclass(frozen=True)
class Downsampling(Physics):
    """``A x = M ⊙ (k ∗ x)↓s`` (``M`` an optional mask of measured low-resolution pixels, all by default).

    ``kernel`` is ``(kh, kw)`` or one per batch item ``(B, kh, kw)``; ``scale`` in {2, 3, 4}.
    """

    kernel: Tensor
    scale: int
    mask: Tensor | None = None
    channels: int = 3
    provides = frozenset({CLOSED_FORM_PROX})

    def ei_transforms(self) -> TransformGroup:
        """Quarter turns and circular shifts by less than the scale: each puts the image on another decimation
        sub-grid, and super-resolution is equivariant to neither."""
        return Union([Rotations(), Shifts(period=self.scale)])

    def __post_init__(self) -> None:
        require(int(self.scale) in SCALES, f"super-resolution scale {self.scale} is invalid; allowed: {SCALES}")

    def _otf(self, like: Tensor) -> Tensor:
        kernel = self.kernel if self.kernel.dim() == 2 else self.kernel[:, None]  # (B, 1, kh, kw) per item
        return kernel_otf(kernel.to(dtype=like.dtype, device=like.device), tuple(like.shape[-2:]))

    def blur(self, x: Tensor) -> Tensor:
        return torch.fft.ifft2(self._otf(x) * torch.fft.fft2(x)).real

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        require(
            x.shape[-2] % self.scale == 0 and x.shape[-1] % self.scale == 0,
            f"image size {tuple(x.shape[-2:])} is not a multiple of the scale {self.scale}",
        )
        return self.apply_mask(self.blur(x)[..., :: self.scale, :: self.scale])

    def upsample(self, y: Tensor) -> Tensor:
        """Zero-filling up-sampling (the adjoint of ``↓s``)."""
        out = y.new_zeros(*y.shape[:-2], y.shape[-2] * self.scale, y.shape[-1] * self.scale)
        out[..., :: self.scale, :: self.scale] = y
        return out

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        up = self.upsample(self.apply_mask(y))
        return torch.fft.ifft2(self._otf(up).conj() * torch.fft.fft2(up)).real

    def image_size(self, y: Tensor) -> tuple[int, int]:
        """The high-resolution grid: ``scale`` times the measured one."""
        return (y.shape[-2] * self.scale, y.shape[-1] * self.scale)

    def apply_mask(self, y: Tensor) -> Tensor:
        return y if self.mask is None else y * self.mask.to(y.dtype)

    def with_mask(self, mask: Tensor) -> Downsampling:
        return replace(self, mask=mask)

    def frozen(self) -> Downsampling:
        return replace(self, kernel=self.kernel.detach())

    def at_fixed_acquisition(self) -> Downsampling:
        """Every low-resolution pixel measured (a deployed network's input) is no mask: the exact data step."""
        return replace(self, mask=None) if self.mask is not None and bool(self.mask.all()) else self

    def split(self, fraction: float, generator: torch.Generator | None = None) -> tuple[Downsampling, Downsampling]:
        """Two operators on disjoint random subsets of the measured low-resolution pixels: (kept, held out)."""
        require(self.mask is not None, "split needs the measured-pixel mask (SRSample.physics() sets it)")
        draw = torch.rand(self.mask.shape, generator=generator).to(self.mask.device) < fraction
        held_out = self.mask & draw
        return self.with_mask(self.mask & ~held_out), self.with_mask(held_out)

    def data_term(self, y: Tensor) -> SRDataTerm:
        return SRDataTerm(self, y)

    def bicubic_upsampling(self, y: Tensor) -> Tensor:
        """The usual baseline: bicubic interpolation of ``y`` to the high-resolution grid."""
        return F.interpolate(y, scale_factor=self.scale, mode="bicubic", align_corners=False)


class SRDataTerm(DataTerm):
    """``A`` bound to ``y``: bicubic start, closed-form data step when every low-resolution pixel is measured."""

    physics: Downsampling

    def init(self) -> Tensor:
        return self.physics.bicubic_upsampling(self.physics.apply_mask(self.y))

    def prox(self, z: Tensor, alpha: Tensor | float, iterations: int = 30) -> Tensor:
        """``argmin_x ‖A x − y‖² + α ‖x − z‖²`` = ``(AᵀA + α)⁻¹ (Aᵀy + α z)``, exactly, in the Fourier domain
        (conjugate gradients when only part of the pixels is measured, e.g. in self-supervised splitting)."""
        physics = self.physics
        if physics.mask is not None and not bool(physics.mask.all()):
            return super().prox(z, alpha, iterations)
        s = physics.scale
        otf = physics._otf(z)
        otf_conj, otf_power = otf.conj(), otf.abs() ** 2
        alpha = torch.as_tensor(alpha, dtype=z.dtype, device=z.device).reshape(-1, *[1] * (z.dim() - 1))
        fr = otf_conj * torch.fft.fft2(physics.upsample(self.y)) + torch.fft.fft2(alpha * z)
        fbr = _blocks(otf * fr, s).mean(dim=-1)
        inv_w = _blocks(otf_power, s).mean(dim=-1)
        correction = otf_conj * (fbr / (inv_w + alpha)).repeat(*[1] * (z.dim() - 2), s, s)
        return torch.fft.ifft2((fr - correction) / alpha).real
