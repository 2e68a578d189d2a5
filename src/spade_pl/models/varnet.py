"""E2E-VarNet (fastmri.models.VarNet) behind the MBDL contract, with its U-Net priors addressable by name."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import fastmri
import torch
from fastmri.data.transforms import mask_center
from fastmri.models import VarNet
from fastmri.models.varnet import VarNetBlock
from torch import Tensor, nn

from spade_pl.models.base import MBDLNetwork
from spade_pl.models.norms import use_group_kernel_instance_norms
from spade_pl.physics.mri import MultiCoilMRI, NativeOrderSENSE


def batch_num_low_frequencies(physics: MultiCoilMRI) -> int | None:
    """fastmri's sensitivity net takes one int per batch; ``None`` lets it read the centre from the mask."""
    n = physics.num_low_frequencies
    if n is None:
        return None
    if isinstance(n, Tensor):
        return int(n.flatten()[0]) if bool((n == n.flatten()[0]).all()) else None
    return int(n)


def cascade_step(block: VarNetBlock, kspace: Tensor, y: Tensor, sense: NativeOrderSENSE) -> Tensor:
    """``fastmri``'s ``VarNetBlock.forward`` (same modules, same math) on native-order k-space.

    ``k - dc_weight · P(k - y) - F(S · U-Net(Σ conj(S) F^{-1} k))`` with ``k``, ``y`` in the FFT's native
    order (see :class:`NativeOrderSENSE`); a test checks it against fastmri's. The soft data consistency is
    one fused multiply-add with the (tiny) weighted mask instead of fastmri's where/multiply/subtract passes
    over the whole multi-coil k-space.
    """
    image = sense.reduce(kspace).unsqueeze(1)  # NormUnet takes (B, 1, H, W, 2)
    model_term = sense.expand(block.model(image).squeeze(1))
    weighted_mask = sense.mask.to(kspace.dtype) * block.dc_weight
    return torch.addcmul(kspace - model_term, kspace - y, weighted_mask, value=-1)


class E2EVarNet(MBDLNetwork):
    """fastmri's E2E-VarNet: a sensitivity U-Net plus ``num_cascades`` U-Net cascades with soft data consistency.

    The cascades are fastmri's own ``VarNetBlock``s (the module tree and parameter count are exactly
    fastmri's). The output is the coil-combined complex image ``Σ_c conj(S_c) F^{-1} k_c`` with the
    estimated (RSS-normalised) maps, whose magnitude is the usual RSS output wherever the predicted coil
    images are consistent with the maps; the complex output is what self-supervised fine-tuning needs.
    Priors: ``cascade{i}`` (each cascade's U-Net) and ``sens`` (the sensitivity U-Net).
    """

    needs_maps = False

    def __init__(
        self, num_cascades: int = 8, chans: int = 18, pools: int = 4, sens_chans: int = 8, sens_pools: int = 4
    ):
        super().__init__()
        varnet = VarNet(
            num_cascades=num_cascades, sens_chans=sens_chans, sens_pools=sens_pools, chans=chans, pools=pools
        )
        self.varnet = use_group_kernel_instance_norms(varnet)

    def estimate_maps(self, y: Tensor, physics: MultiCoilMRI) -> Tensor:
        """fastmri's ``SensitivityModel.forward``; with a known centre width, the centre is cut at Python-int
        bounds. fastmri's own path puts them in a device tensor and reads them back (``int(mask_from)``): a
        GPU-to-host synchronisation every forward, which also keeps the forward from being a CUDA graph."""
        sens = self.varnet.sens_net
        low = batch_num_low_frequencies(physics)
        if not low or not sens.mask_center:
            return sens(y, physics.mask, low)
        pad = (physics.mask.shape[-2] - low + 1) // 2
        images, batches = sens.chans_to_batch_dim(fastmri.ifft2c(mask_center(y, pad, pad + low)))
        return sens.divide_root_sum_of_squares(sens.batch_chans_to_chan_dim(sens.norm_unet(images), batches))

    def calibration(self, y: Tensor, physics: MultiCoilMRI) -> Tensor | None:
        """The estimated coil maps, which depend only on the centre columns of ``y`` when their width is known
        (else the sensitivity net reads the centre from the mask, which a split changes: None)."""
        if batch_num_low_frequencies(physics) and self.varnet.sens_net.mask_center:
            return self.estimate_maps(y, physics)
        return None

    def _each_cascade(
        self, y: Tensor, physics: MultiCoilMRI, maps: Tensor | None = None
    ) -> Iterator[tuple[Tensor, NativeOrderSENSE]]:
        """Each cascade's multi-coil k-space (native order), with the SENSE pair the cascades use; ``maps``:
        the coil maps when already estimated from the same centre (:meth:`calibration`)."""
        sense = NativeOrderSENSE(physics.mask, self.estimate_maps(y, physics) if maps is None else maps)
        y_native = sense.to_native(y)
        kspace = y_native
        for cascade in self.varnet.cascades:
            kspace = cascade_step(cascade, kspace, y_native, sense)
            yield kspace, sense

    def _cascades(
        self, y: Tensor, physics: MultiCoilMRI, maps: Tensor | None = None
    ) -> tuple[Tensor, NativeOrderSENSE]:
        """The final multi-coil k-space (native order) and the SENSE pair the cascades used."""
        return deque(self._each_cascade(y, physics, maps), maxlen=1).pop()  # only the last one is kept alive

    def cascade_images(self, y: Tensor, physics: MultiCoilMRI) -> list[Tensor]:
        """The coil-combined image after every cascade, the last one being :meth:`forward`'s output: what
        per-cascade distillation (``finetune.objective.cascade_weight``) matches to the teacher's."""
        return [sense.reduce(kspace) for kspace, sense in self._each_cascade(y, physics)]

    def forward(self, y: Tensor, physics: MultiCoilMRI) -> Tensor:
        kspace, sense = self._cascades(y, physics)
        return sense.reduce(kspace)

    def coil_kspace(self, y: Tensor, physics: MultiCoilMRI, calibration: Tensor | None = None) -> Tensor:
        """The predicted multi-coil k-space ``(B, C, H, W, 2)``, centred: fastmri VarNet's own output domain."""
        kspace, sense = self._cascades(y, physics, calibration)
        return sense.to_centred(kspace)

    def measurement_physics(self, y: Tensor, physics: MultiCoilMRI) -> MultiCoilMRI:
        with torch.no_grad():
            return physics.with_maps(self.estimate_maps(y, physics))

    def priors(self) -> dict[str, nn.Module]:
        named = {f"cascade{i}": c.model.unet for i, c in enumerate(self.varnet.cascades)}
        named["sens"] = self.varnet.sens_net.norm_unet.unet
        return named

    def prior_output_layers(self) -> dict[str, list[nn.Module]]:
        return {name: [unet.up_conv[-1][-1]] for name, unet in self.priors().items()}
