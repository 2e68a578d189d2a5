"""Multi-coil SENSE operator for compressed-sensing MRI, in fastMRI's tensor convention.

Images are ``(B, H, W, 2)`` real tensors (last dim = real, imag), k-space is ``(B, C, H, W, 2)``,
the mask ``(B, 1, 1, W, 1)`` bool (Cartesian columns = phase-encode, the last image axis) and the
coil maps ``(B, C, H, W, 2)``. The FFT is fastmri's centred orthonormal ``fft2c``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import fastmri
import torch
from torch import Tensor

from spade_pl.core.safe_math import root_sum_of_squares
from spade_pl.physics.base import (
    COIL_MAPS,
    MULTICOIL_KSPACE,
    DataTerm,
    MeasurementView,
    MissingOperatorData,
    Physics,
)


def _complex(x: Tensor) -> Tensor:
    return torch.view_as_complex(x if x.stride(-1) == 1 and x.stride(-2) == 2 else x.contiguous())


def complex_planes(x: Tensor) -> Tensor:
    """Complex images ``(B, ..., H, W, 2)`` (an image, coil images, coil maps) -> real planes ``(B, N, H, W)``."""
    return x.movedim(-1, -3).reshape(x.shape[0], -1, *x.shape[-3:-1])


def from_complex_planes(planes: Tensor, like: Tensor) -> Tensor:
    """The inverse of :func:`complex_planes` for tensors shaped like ``like``."""
    return planes.reshape(*like.shape[:-3], 2, *planes.shape[-2:]).movedim(-3, -1)


def coil_image_view(
    physics: MultiCoilMRI, predict_kspace: Callable[[Tensor, MultiCoilMRI, Tensor | None], Tensor]
) -> MeasurementView:
    """Multi-coil MRI seen in the coil images, for a network that predicts multi-coil k-space
    (``predict_kspace(y, physics, calibration)``, centred): ``x`` = its coil images, ``A`` = mask x FFT, which
    needs no coil maps, so nothing estimated enters the operator."""
    return MeasurementView(
        operator=physics,
        estimate=lambda y, physics_, calibration: ifft2c(predict_kspace(y, physics_, calibration)),
        measure=lambda x, operator: operator.apply_mask(fft2c(x)),
        to_planes=complex_planes,
        from_planes=from_complex_planes,
    )


def magnitude(x: Tensor) -> Tensor:
    """``|x|`` of complex images ``(..., 2)``, with the gradient of :func:`root_sum_of_squares` at 0."""
    return root_sum_of_squares(x, (-1,))


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


def masked(kspace: Tensor, mask: Tensor) -> Tensor:
    """``P ⊙ k``: the sampled entries of ``kspace``, zeros elsewhere (``mask`` broadcasts, bool)."""
    return torch.where(mask, kspace, torch.zeros((), dtype=kspace.dtype, device=kspace.device))


class NativeOrderSENSE:
    """The SENSE pair ``F(S x)`` / ``Σ_c conj(S_c) F^{-1} k_c`` with k-space kept in the FFT's native order.

    ``fft2c``/``ifft2c`` shift the whole multi-coil tensor before and after every transform; in an
    unrolled or fixed-point loop those shifts are a large part of the physics' time (on 16 coils at 320²
    a roll costs about as much as the FFT). Shifting is a permutation, so it commutes with every
    elementwise step (masking, data consistency, coil products and sums): shift the mask, the maps and the
    measurements once, keep the loop's k-space unshifted, and shift only the single-coil image that the
    prior sees. The results are those of the centred operators, to float rounding.
    """

    def __init__(self, mask: Tensor, maps: Tensor):
        self.mask = torch.fft.ifftshift(mask, dim=(-3, -2))
        self.maps = _complex(torch.fft.ifftshift(maps, dim=(-3, -2)))

    @staticmethod
    def to_native(kspace: Tensor) -> Tensor:
        """Centred coil k-space ``(B, C, H, W, 2)`` -> native order."""
        return torch.fft.ifftshift(kspace, dim=(-3, -2))

    @staticmethod
    def to_centred(kspace: Tensor) -> Tensor:
        """Native-order coil k-space -> centred (the inverse of :meth:`to_native`)."""
        return torch.fft.fftshift(kspace, dim=(-3, -2))

    def expand(self, image: Tensor) -> Tensor:
        """Centred image ``(B, H, W, 2)`` -> native-order coil k-space ``F(S ⊙ x)`` (no mask)."""
        coils = self.maps * _complex(torch.fft.ifftshift(image, dim=(-3, -2))).unsqueeze(1)
        return torch.view_as_real(torch.fft.fft2(coils, norm="ortho"))

    def reduce(self, kspace: Tensor) -> Tensor:
        """Native-order coil k-space -> centred coil-combined image ``Σ_c conj(S_c) F^{-1} k_c``."""
        image = (torch.fft.ifft2(_complex(kspace), norm="ortho") * self.maps.conj()).sum(dim=1)
        return torch.fft.fftshift(torch.view_as_real(image), dim=(-3, -2))

    def apply_mask(self, kspace: Tensor) -> Tensor:
        return masked(kspace, self.mask)

    def normal_residual(self, image: Tensor, y_native: Tensor) -> Tensor:
        """``A^H(A x - y)`` (the data term's gradient), with ``y`` in native order: ``reduce(P(F S x - y))``."""
        return self.reduce(self.apply_mask(self.expand(image) - y_native))


@dataclass(frozen=True)
class MultiCoilMRI(Physics):
    """``A x = P ⊙ F(S ⊙ x)`` and its adjoint ``A^H k = Σ_c conj(S_c) ⊙ F^{-1}(P ⊙ k_c)``.

    A plain (frozen) value object rather than an ``nn.Module``: it carries per-batch data (mask,
    maps), has no parameters, and must never be traced or pruned. Complex images ``(B, H, W, 2)`` meet CNN
    priors as 2 channels (real, imaginary).
    """

    mask: Tensor
    maps: Tensor | None = None
    num_low_frequencies: int | None = None
    channels: int = 2
    provides = frozenset({MULTICOIL_KSPACE, COIL_MAPS})
    data_term_needs = frozenset({COIL_MAPS})

    def _require_maps(self) -> Tensor:
        if self.maps is None:
            raise MissingOperatorData(
                "coil sensitivity maps", "compute ESPIRiT maps with `python -m spade_pl.data.mri.espirit DATA_FOLDER`"
            )
        return self.maps

    def A(self, x: Tensor) -> Tensor:  # noqa: N802 (operator notation)
        """Image ``(B, H, W, 2)`` -> masked multi-coil k-space ``(B, C, H, W, 2)``."""
        return self.apply_mask(sens_expand(x, self._require_maps()))

    def A_adjoint(self, k: Tensor) -> Tensor:  # noqa: N802
        """Multi-coil k-space ``(B, C, H, W, 2)`` -> image ``(B, H, W, 2)``."""
        return sens_reduce(self.apply_mask(k), self._require_maps())

    def apply_mask(self, k: Tensor) -> Tensor:
        return masked(k, self.mask)

    def with_maps(self, maps: Tensor | None) -> MultiCoilMRI:
        """The same sampling with other coil maps (e.g. maps estimated by a network)."""
        return replace(self, maps=maps)

    def image_size(self, y: Tensor) -> tuple[int, int]:
        """The k-space grid, ``(H, W)`` of ``y``'s ``(B, C, H, W, 2)`` (no coil maps needed)."""
        return tuple(y.shape[-3:-1])

    def to_channels(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 1, 2)

    def from_channels(self, t: Tensor) -> Tensor:
        return t.permute(0, 2, 3, 1)

    def transformed(self, transform: Callable[[Tensor], Tensor]) -> MultiCoilMRI:
        """The coil maps move with the object (the SPADE reference's convention for EI); ``transform`` acts on
        real planes ``(B, N, H, W)``."""
        if self.maps is None:
            return self
        return self.with_maps(from_complex_planes(transform(complex_planes(self.maps)), self.maps))

    def frozen(self) -> MultiCoilMRI:
        return self.with_maps(self._require_maps().detach())

    def data_term(self, y: Tensor) -> MRIDataTerm:
        return MRIDataTerm(self, y)

    def with_mask(self, mask: Tensor) -> MultiCoilMRI:
        """The same coils with another sampling mask."""
        return replace(self, mask=mask)

    def split(self, fraction: float, generator: torch.Generator | None = None) -> tuple[MultiCoilMRI, MultiCoilMRI]:
        """Two operators on disjoint parts of the sampled columns: (kept, held out), as in SSDU.

        The held-out part is a random ``fraction`` of the sampled columns outside the fully sampled centre
        (``num_low_frequencies``, which every network needs whole for its calibration), per slice.
        """
        width = self.mask.shape[-2]
        columns = self.mask.reshape(self.mask.shape[0], width)
        centre = torch.zeros(width, dtype=torch.bool, device=self.mask.device)
        low = 0 if self.num_low_frequencies is None else int(torch.as_tensor(self.num_low_frequencies).max())
        centre[(width - low + 1) // 2 : (width - low + 1) // 2 + low] = True
        draw = torch.rand(columns.shape, generator=generator).to(self.mask.device) < fraction
        held_out = columns & ~centre & draw
        shape = self.mask.shape
        return self.with_mask((columns & ~held_out).reshape(shape)), self.with_mask(held_out.reshape(shape))


class MRIDataTerm(DataTerm):
    """``A`` bound to ``y`` on native-order k-space (:class:`NativeOrderSENSE`): the same ``A^H y`` and
    ``A^H(A x − y)`` as the centred operators, without shifting the multi-coil tensors every iteration."""

    def __init__(self, physics: MultiCoilMRI, y: Tensor):
        super().__init__(physics, y)
        self.sense = NativeOrderSENSE(physics.mask, physics._require_maps())
        self.y_native = self.sense.to_native(y)

    def init(self) -> Tensor:
        return self.sense.reduce(self.sense.apply_mask(self.y_native))

    def grad(self, x: Tensor) -> Tensor:
        return self.sense.normal_residual(x, self.y_native)


def rss_zero_filled(masked_kspace: Tensor) -> Tensor:
    """Zero-filled baseline: root-sum-of-squares of the coil images of the measured k-space, ``(B, H, W)``."""
    return fastmri.rss_complex(fastmri.ifft2c(masked_kspace), dim=1)
