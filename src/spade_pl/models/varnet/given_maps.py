"""VarNet with given coil maps: E2E-VarNet's cascades without its sensitivity net (maps come with the data)."""

from __future__ import annotations

from fastmri.models.varnet import NormUnet, VarNetBlock
from torch import Tensor, nn

from spade_pl.core.errors import require
from spade_pl.models.base import MBDLNetwork
from spade_pl.models.varnet.e2e import E2EVarNet
from spade_pl.models.varnet.instance_norm import use_group_kernel_instance_norms
from spade_pl.physics.base import COIL_MAPS, MULTICOIL_KSPACE
from spade_pl.physics.mri import MultiCoilMRI


def require_maps(physics: MultiCoilMRI, network: str) -> Tensor:
    """``physics.maps``, or a one-line input error saying how to get coil maps for ``network=<network>``."""
    require(
        physics.maps is not None,
        f"network={network} needs coil sensitivity maps with the data, and this data has none; compute ESPIRiT "
        f"maps with `python -m spade_pl.data.mri.espirit DATA_FOLDER`, or use network=e2e_varnet "
        f"(it estimates its own maps)",
    )
    return physics.maps


class _Cascades(nn.Module):
    """Holds the cascades under the same names as ``fastmri.models.VarNet`` (``cascades.{i}``)."""

    def __init__(self, num_cascades: int, chans: int, pools: int):
        super().__init__()
        self.cascades = nn.ModuleList(VarNetBlock(NormUnet(chans, pools)) for _ in range(num_cascades))


class VarNetGivenMaps(E2EVarNet):
    """E2E-VarNet's ``num_cascades`` U-Net cascades with soft data consistency, using the data's coil maps.

    The cascades are fastmri's own ``VarNetBlock(NormUnet(chans, pools))`` (8 cascades, 18 chans, 4 pools:
    19,634,712 parameters, 2,454,339 per cascade); there is no sensitivity net. The forward pass, the
    coil combination ``sum_c conj(S_c) F^{-1} k_c`` and the output layers are E2EVarNet's own (inherited),
    with ``physics.maps`` in place of estimated maps. The parameters are named as in E2EVarNet
    (``varnet.cascades.{i}...``), so an E2E-VarNet's cascades load into this network. Priors: ``cascade{i}``.
    """

    needs = frozenset({MULTICOIL_KSPACE, COIL_MAPS})

    def __init__(self, num_cascades: int = 8, chans: int = 18, pools: int = 4, output: str = "combined"):
        # E2EVarNet.__init__ is skipped on purpose: it would build the sensitivity net that this network lacks.
        MBDLNetwork.__init__(self)
        require(int(num_cascades) >= 1, f"network.model.num_cascades={num_cascades} is invalid; allowed: >= 1")
        require(
            output in self.OUTPUTS, f"network.model.output={output!r} is unknown; allowed: {', '.join(self.OUTPUTS)}"
        )
        self.output = output
        self.architecture = dict(num_cascades=num_cascades, chans=chans, pools=pools)
        self.varnet = use_group_kernel_instance_norms(_Cascades(num_cascades, chans, pools))

    def library_format(self) -> None:
        """fastMRI has no VarNet class that takes given coil maps: none."""
        return None

    def estimate_maps(self, y: Tensor, physics: MultiCoilMRI) -> Tensor:
        """The maps are given, not estimated: ``physics.maps`` (an input error when the data has none)."""
        return require_maps(physics, "varnet")

    def calibration(self, y: Tensor, physics: MultiCoilMRI) -> None:
        """Nothing to reuse: the maps come with the data, and every split of it carries the same ones."""
        return None

    def measurement_physics(self, y: Tensor, physics: MultiCoilMRI) -> MultiCoilMRI:
        require_maps(physics, "varnet")
        return physics

    def priors(self) -> dict[str, nn.Module]:
        return {f"cascade{i}": c.model.unet for i, c in zip(self.stage_ids(), self.varnet.cascades, strict=True)}
