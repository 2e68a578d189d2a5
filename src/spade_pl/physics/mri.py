"""Multi-coil SENSE operator for compressed-sensing MRI, in fastMRI's tensor convention.

Images are ``(B, H, W, 2)`` real tensors (last dim = real, imag), k-space is ``(B, C, H, W, 2)``,
the mask ``(B, 1, 1, W, 1)`` bool (Cartesian columns = phase-encode, the last image axis) and the
coil maps ``(B, C, H, W, 2)``. The FFT is fastmri's centred orthonormal ``fft2c``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import fastmri
import torch
from torch import Tensor


def _complex(x: Tensor) -> Tensor:
    return torch.view_as_complex(x if x.stride(-1) == 1 and x.stride(-2) == 2 else x.contiguous())


def fft2c(x: Tensor) -> Tensor:
    """Centred orthonormal 2-D FFT of ``(..., H, W, 2)``: fastmri.fft2c's result, native complex arithmetic."""
    c = torch.fft.fft2(torch.fft.ifftshift(_complex(x), dim=(-2, -1)), norm="ortho")
    return torch.view_as_real(torch.fft.fftshift(c, dim=(-2, -1)))


def ifft2c(k: Tensor) -> Tensor:
    """Centred orthonormal inverse 2-D FFT (fastmri.ifft2c's result)."""
    c = torch.fft.ifft2(torch.fft.ifftshift(_complex(k), dim=(-2, -1)), norm="ortho")
    return torch.view_as_real(torch.fft.fftshift(c, dim=(-2, -1)))


def sens_expand(image: Tensor, maps: Tensor) -> Tensor:
    """Image ``(B, H, W, 2)`` -> coil k-space ``F(S ⊙ x)`` ``(B, C, H, W, 2)`` (no mask)."""
    return fft2c(torch.view_as_real(_complex(maps) * _complex(image).unsqueeze(1)))


def sens_reduce(kspace: Tensor, maps: Tensor) -> Tensor:
    """Coil k-space ``(B, C, H, W, 2)`` -> coil-combined image ``Σ_c conj(S_c) F^{-1} k_c`` ``(B, H, W, 2)``.

    Native complex arithmetic: on CPU several times faster than fastmri.complex_mul on (..., 2) tensors,
    which matters because it runs in every cascade/iteration of every MBDL network, pruned or not.
    """
    return torch.view_as_real((_complex(ifft2c(kspace)) * _complex(maps).conj()).sum(dim=1))


@dataclass(frozen=True)
class MultiCoilMRI:
    """``A x = P ⊙ F(S ⊙ x)`` and its adjoint ``A^H k = Σ_c conj(S_c) ⊙ F^{-1}(P ⊙ k_c)``.

    A plain (frozen) value object rather than an ``nn.Module``: it carries per-batch data (mask,
    maps), has no parameters, and must never be traced or pruned.
    """

    mask: Tensor
    maps: Tensor | None = None
    num_low_frequencies: int | None = None

    def _require_maps(self) -> Tensor:
        if self.maps is None:
            raise ValueError("this operation needs coil sensitivity maps, and this MultiCoilMRI has none")
        return self.maps

    def A(self, x: Tensor) -> Tensor:  # noqa: N802 (operator notation)
        """Image ``(B, H, W, 2)`` -> masked multi-coil k-space ``(B, C, H, W, 2)``."""
        return self.apply_mask(sens_expand(x, self._require_maps()))

    def A_adjoint(self, k: Tensor) -> Tensor:  # noqa: N802
        """Multi-coil k-space ``(B, C, H, W, 2)`` -> image ``(B, H, W, 2)``."""
        return sens_reduce(self.apply_mask(k), self._require_maps())

    def apply_mask(self, k: Tensor) -> Tensor:
        return torch.where(self.mask, k, torch.zeros((), dtype=k.dtype, device=k.device))

    def with_maps(self, maps: Tensor | None) -> MultiCoilMRI:
        """The same sampling with other coil maps (e.g. maps estimated by a network)."""
        return replace(self, maps=maps)


def rss_zero_filled(masked_kspace: Tensor) -> Tensor:
    """Zero-filled baseline: root-sum-of-squares of the coil images of the measured k-space, ``(B, H, W)``."""
    return fastmri.rss_complex(fastmri.ifft2c(masked_kspace), dim=1)
