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
        coil_images = fastmri.complex_mul(x.unsqueeze(1), self._require_maps())
        return self.apply_mask(fastmri.fft2c(coil_images))

    def A_adjoint(self, k: Tensor) -> Tensor:  # noqa: N802
        """Multi-coil k-space ``(B, C, H, W, 2)`` -> image ``(B, H, W, 2)``."""
        coil_images = fastmri.ifft2c(self.apply_mask(k))
        return fastmri.complex_mul(coil_images, fastmri.complex_conj(self._require_maps())).sum(dim=1)

    def apply_mask(self, k: Tensor) -> Tensor:
        return torch.where(self.mask, k, torch.zeros((), dtype=k.dtype, device=k.device))

    def with_maps(self, maps: Tensor | None) -> MultiCoilMRI:
        """The same sampling with other coil maps (e.g. maps estimated by a network)."""
        return replace(self, maps=maps)


def rss_zero_filled(masked_kspace: Tensor) -> Tensor:
    """Zero-filled baseline: root-sum-of-squares of the coil images of the measured k-space, ``(B, H, W)``."""
    return fastmri.rss_complex(fastmri.ifft2c(masked_kspace), dim=1)
