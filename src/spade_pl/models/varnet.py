"""E2E-VarNet (fastmri.models.VarNet) behind the MBDL contract, with its U-Net priors addressable by name."""

from __future__ import annotations

import torch
from fastmri.models import VarNet
from fastmri.models.varnet import VarNetBlock
from torch import Tensor, nn

from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.mri import MultiCoilMRI, sens_expand, sens_reduce


def batch_num_low_frequencies(physics: MultiCoilMRI) -> int | None:
    """fastmri's sensitivity net takes one int per batch; ``None`` lets it read the centre from the mask."""
    n = physics.num_low_frequencies
    if n is None:
        return None
    if isinstance(n, Tensor):
        return int(n.flatten()[0]) if bool((n == n.flatten()[0]).all()) else None
    return int(n)


def cascade_step(block: VarNetBlock, kspace: Tensor, y: Tensor, mask: Tensor, maps: Tensor) -> Tensor:
    """``fastmri``'s ``VarNetBlock.forward`` (same modules, same math), with native complex arithmetic.

    ``k - dc_weight · P(k - y) - F(S · U-Net(Σ conj(S) F^{-1} k))``; a test checks it against fastmri's.
    """
    image = sens_reduce(kspace, maps).unsqueeze(1)  # NormUnet takes (B, 1, H, W, 2)
    model_term = sens_expand(block.model(image).squeeze(1), maps)
    soft_dc = torch.where(mask, kspace - y, torch.zeros((), dtype=kspace.dtype, device=kspace.device))
    return kspace - soft_dc * block.dc_weight - model_term


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
        self.varnet = VarNet(
            num_cascades=num_cascades, sens_chans=sens_chans, sens_pools=sens_pools, chans=chans, pools=pools
        )

    def estimate_maps(self, y: Tensor, physics: MultiCoilMRI) -> Tensor:
        return self.varnet.sens_net(y, physics.mask, batch_num_low_frequencies(physics))

    def forward(self, y: Tensor, physics: MultiCoilMRI) -> Tensor:
        maps = self.estimate_maps(y, physics)
        kspace = y.clone()
        for cascade in self.varnet.cascades:
            kspace = cascade_step(cascade, kspace, y, physics.mask, maps)
        return sens_reduce(kspace, maps)

    def measurement_physics(self, y: Tensor, physics: MultiCoilMRI) -> MultiCoilMRI:
        with torch.no_grad():
            return physics.with_maps(self.estimate_maps(y, physics))

    def priors(self) -> dict[str, nn.Module]:
        named = {f"cascade{i}": c.model.unet for i, c in enumerate(self.varnet.cascades)}
        named["sens"] = self.varnet.sens_net.norm_unet.unet
        return named

    def prior_output_layers(self) -> dict[str, list[nn.Module]]:
        return {name: [unet.up_conv[-1][-1]] for name, unet in self.priors().items()}
