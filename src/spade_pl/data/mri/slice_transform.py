"""Per-slice transform: fastMRI multi-coil slice -> normalised, masked measurements + ground truth."""

from __future__ import annotations

from typing import NamedTuple

import fastmri
import numpy as np
import torch
from fastmri.data.subsample import MaskFunc
from fastmri.data.transforms import apply_mask, center_crop, to_tensor
from torch import Tensor

from spade_pl.core.errors import SpadeInputError, require
from spade_pl.data.mri.hdf5 import SENS_MAPS_KEY
from spade_pl.physics.mri import MultiCoilMRI, magnitude, rss_zero_filled


class MRISample(NamedTuple):
    """One slice, ready for an MBDL network. Batched by the default collate (``maps`` empty without maps).

    Implements the batch protocol (:class:`spade_pl.physics.sample.Sample`): ``y``, ``physics()``, ``image(x)``,
    ``baseline()``, keyed by ``(fname, slice_num)``.
    """

    masked_kspace: Tensor  # (C, H, W, 2), normalised by the max |k| of the measured samples
    mask: Tensor  # (1, 1, W, 1) bool
    num_low_frequencies: int
    target: Tensor  # (h, w) RSS magnitude of the fully sampled slice, same scale, cropped to recon size
    maps: Tensor  # (C, H, W, 2) coil maps, or an empty tensor when the data has none
    fname: str
    slice_num: int
    #: the normalisation the slice was divided by: a reconstruction times it is in the file's own scale
    scale: float = 1.0

    @property
    def y(self) -> Tensor:
        return self.masked_kspace

    def physics(self) -> MultiCoilMRI:
        """The measurement operator of a batch: its masks, its coil maps when the data has them."""
        maps = self.maps if self.maps.numel() > 0 else None
        return MultiCoilMRI(mask=self.mask, maps=maps, num_low_frequencies=self.num_low_frequencies)

    def image(self, x: Tensor) -> Tensor:
        """A network's complex output ``(B, H, W, 2)`` -> magnitude ``(B, h, w)`` cropped like the target."""
        return center_crop(magnitude(x), tuple(self.target.shape[-2:]))

    def baseline(self) -> Tensor:
        """The zero-filled reconstruction (RSS of the measured k-space), cropped like the target."""
        return center_crop(rss_zero_filled(self.masked_kspace), tuple(self.target.shape[-2:]))


class MRISliceTransform:
    """Mask the k-space with ``mask_func``, normalise the slice, and derive the ground truth.

    Normalisation (SPADE reference): the slice's k-space is divided by the largest magnitude among the
    *measured* samples (so no ground truth is needed to normalise). The target is the RSS of the fully
    sampled, equally normalised k-space, centre-cropped to the header's recon size; it equals fastMRI's
    ``reconstruction_rss`` divided by the same scale.

    A file that stores its own ``mask`` (fastMRI's test and challenge files, a scanner's accelerated scan) holds
    k-space that is already undersampled: that mask is used as it is, the centre width comes from the file's
    ``num_low_frequency``, and the target is all zeros (there is no ground truth; only its size is used).
    """

    def __init__(self, mask_func: MaskFunc | None, use_seed: bool):
        self.mask_func = mask_func
        self.use_seed = use_seed  # True -> the mask is a fixed function of the file name (val/test)

    def __call__(self, kspace: np.ndarray, mask, target, attrs: dict, fname: str, slice_num: int) -> MRISample:
        kspace_t = to_tensor(kspace)
        if not torch.isfinite(kspace_t).all():
            raise SpadeInputError(
                f"k-space of {fname} slice {slice_num} has NaN/inf values; allowed: finite k-space "
                f"(fix or drop the file)"
            )
        # training masks: drawn from NumPy's global generator, seeded per sample (data/sampling.py), so a resumed
        # job draws the masks the uninterrupted job drew
        if mask is None:
            require(self.mask_func is not None, f"{fname} stores no mask and no sampling mask is set (problem.mask)")
            seed = tuple(map(ord, fname)) if self.use_seed else int(np.random.randint(0, 2**31))
            masked, mask_t, num_low = apply_mask(
                kspace_t, self.mask_func, seed=seed, padding=(attrs["padding_left"], attrs["padding_right"])
            )
        else:  # already undersampled: the file's own mask
            mask_t = torch.from_numpy(np.asarray(mask, dtype=bool)).reshape(1, 1, -1, 1)
            masked, num_low = kspace_t * mask_t, int(attrs.get("num_low_frequency", 0))
        scale = fastmri.complex_abs(masked).max().clamp_min(torch.finfo(torch.float32).tiny)
        crop = (min(attrs["recon_size"][0], kspace.shape[-2]), min(attrs["recon_size"][1], kspace.shape[-1]))
        if mask is None:
            full_rss = fastmri.rss_complex(fastmri.ifft2c(kspace_t / scale), dim=0)
        else:
            full_rss = torch.zeros(kspace.shape[-2:])
        maps = to_tensor(attrs[SENS_MAPS_KEY][slice_num]) if SENS_MAPS_KEY in attrs else torch.empty(0)
        return MRISample(
            masked_kspace=masked / scale,
            mask=mask_t.to(torch.bool),
            num_low_frequencies=int(num_low),
            target=center_crop(full_rss, crop),
            maps=maps,
            fname=fname,
            slice_num=slice_num,
            scale=float(scale),
        )
