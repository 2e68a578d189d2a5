"""E2E-VarNet (fastmri.models.VarNet) behind the MBDL contract, with its U-Net priors addressable by name."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from typing import Any

import fastmri
import torch
from fastmri.data.transforms import mask_center
from fastmri.models import VarNet
from fastmri.models.varnet import VarNetBlock
from torch import Tensor, nn

from spade_pl.core.errors import SpadeInputError, require
from spade_pl.core.safe_math import root_sum_of_squares
from spade_pl.models.base import LibraryFormat, MBDLNetwork
from spade_pl.models.varnet.instance_norm import use_group_kernel_instance_norms
from spade_pl.physics.base import MULTICOIL_KSPACE, MeasurementView
from spade_pl.physics.mri import MultiCoilMRI, NativeOrderSENSE, coil_image_view, ifft2c

# the first cascade's and the sensitivity net's U-Nets, named as in fastmri.models.VarNet
CASCADE_UNET = "cascades.0.model.unet"
SENS_UNET = "sens_net.norm_unet.unet"


def fitting_ratios(chans: int, pools: int, shown: int = 4) -> str:
    """The ``prune.ratio`` values that keep ``k`` of ``chans`` at every level of a fastMRI U-Net (``floor(chans ·
    2^l · (1 - ratio)) = k · 2^l`` for ``l = 0 .. pools``), largest kept width first, ``shown`` of them."""
    fits = []
    for kept in range(chans - 1, 0, -1):
        ratio = math.floor((1 - kept / chans) * 10_000) / 10_000
        if all(math.floor(chans * 2**level * (1 - ratio)) == kept * 2**level for level in range(pools + 1)):
            fits.append(f"{ratio:g} (chans {kept})")
    return ", ".join(sorted(fits, key=lambda f: abs(float(f.split()[0]) - 0.5))[:shown]) or "none"


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

    ``self.varnet`` is a ``fastmri.models.VarNet`` (the module tree, parameter names and count are exactly
    fastmri's), so fastMRI's released weights load into it. ``output="combined"``: the coil-combined complex
    image ``Σ_c conj(S_c) F^{-1} k_c`` with the estimated (RSS-normalised) maps, whose magnitude is the RSS
    wherever the predicted coil images are consistent with the maps. ``output="rss"``: the RSS of the predicted
    coil images (imaginary part 0), exactly what ``fastmri.models.VarNet`` returns and what fastMRI's
    leaderboard scores. Priors: ``cascade{i}`` (each cascade's U-Net) and ``sens`` (the sensitivity U-Net).
    """

    needs = frozenset({MULTICOIL_KSPACE})  # it predicts multi-coil k-space
    dense_priors = ("sens",)
    stages_at, stage_argument = "varnet.cascades", "num_cascades"
    OUTPUTS = ("combined", "rss")

    def __init__(
        self,
        num_cascades: int = 8,
        chans: int = 18,
        pools: int = 4,
        sens_chans: int = 8,
        sens_pools: int = 4,
        output: str = "combined",
    ):
        super().__init__()
        require(
            output in self.OUTPUTS, f"network.model.output={output!r} is unknown; allowed: {', '.join(self.OUTPUTS)}"
        )
        self.output = output
        #: the dense architecture (fastmri.models.VarNet's arguments), whatever pruning later does to the widths
        self.architecture = dict(
            num_cascades=num_cascades, sens_chans=sens_chans, sens_pools=sens_pools, chans=chans, pools=pools
        )
        self.varnet = use_group_kernel_instance_norms(VarNet(**self.architecture))

    def min_image_size(self) -> tuple[int, str]:
        """``2^pools`` of its deepest U-Net: a smaller grid leaves the calibration centre without a column and
        the coil maps 0 / 0 (NaN)."""
        pools = max(self.architecture["pools"], self.architecture.get("sens_pools", 0))
        return 2**pools, f"its U-Nets halve the image {pools} times (network.model.pools, sens_pools)"

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

    def _image(self, kspace: Tensor, sense: NativeOrderSENSE) -> Tensor:
        """The output image of native-order coil k-space (see ``output``)."""
        if self.output == "combined":
            return sense.reduce(kspace)
        magnitude = root_sum_of_squares(ifft2c(sense.to_centred(kspace)), (1, -1))
        return torch.stack((magnitude, torch.zeros_like(magnitude)), dim=-1)

    def cascade_images(self, y: Tensor, physics: MultiCoilMRI) -> list[Tensor]:
        """The image after every cascade, the last one being :meth:`forward`'s output: what per-cascade
        distillation (``finetune.objective.cascade_weight``) matches to the teacher's."""
        return [self._image(kspace, sense) for kspace, sense in self._each_cascade(y, physics)]

    def forward(self, y: Tensor, physics: MultiCoilMRI) -> Tensor:
        return self._image(*self._cascades(y, physics))

    def coil_kspace(self, y: Tensor, physics: MultiCoilMRI, calibration: Tensor | None = None) -> Tensor:
        """The predicted multi-coil k-space ``(B, C, H, W, 2)``, centred: fastmri VarNet's own output domain;
        ``calibration``: :meth:`calibration` of a scan with the same centre, reused instead of recomputed."""
        kspace, sense = self._cascades(y, physics, calibration)
        return sense.to_centred(kspace)

    def measurement_view(
        self, y: Tensor, physics: MultiCoilMRI, reference: MBDLNetwork | None = None
    ) -> MeasurementView:
        """The coil images of the predicted k-space, measured by mask x FFT: no estimated coil maps enter ``A``
        (``reference`` is not needed)."""
        return coil_image_view(physics, self.coil_kspace)

    def measurement_physics(self, y: Tensor, physics: MultiCoilMRI) -> MultiCoilMRI:
        with torch.no_grad():
            return physics.with_maps(self.estimate_maps(y, physics))

    @classmethod
    def architecture_from_weights(cls, state: dict[str, Tensor]) -> dict[str, Any]:
        """``num_cascades`` from the cascade indices, ``chans`` / ``pools`` (and the sensitivity net's) from the
        first U-Net's first convolution and its number of down-sampling levels."""
        state = {key.removeprefix("varnet."): value for key, value in state.items() if key.startswith("varnet.")}
        found: dict[str, Any] = {}
        cascades = {int(key.split(".")[1]) for key in state if key.startswith("cascades.")}
        if cascades:
            found["num_cascades"] = max(cascades) + 1
        for prefix, chans, pools in ((CASCADE_UNET, "chans", "pools"), (SENS_UNET, "sens_chans", "sens_pools")):
            first = state.get(f"{prefix}.down_sample_layers.0.layers.0.weight")
            if first is not None:
                found[chans] = int(first.shape[0])
                levels = f"{prefix}.down_sample_layers."
                found[pools] = len({key[len(levels) :].split(".")[0] for key in state if key.startswith(levels)})
        return {k: v for k, v in found.items() if k in cls.constructor_arguments()}

    def library_format(self) -> LibraryFormat:
        """The pruned (or dense) network as a plain ``fastmri.models.VarNet`` state_dict, when its widths are a
        VarNet's: fastMRI's U-Net has ``chans · 2^l`` channels at level ``l``, which uniform pruning keeps when
        ``chans · (1 - ratio)`` is within ``2^-pools`` above an integer (e.g. ratio 0.5 of chans 18: chans 9)."""
        state = self.varnet.state_dict()
        widths = {
            "chans": int(state[f"{CASCADE_UNET}.down_sample_layers.0.layers.0.weight"].shape[0]),
            "sens_chans": int(state[f"{SENS_UNET}.down_sample_layers.0.layers.0.weight"].shape[0]),
        }
        arguments = {**self.architecture, **widths, "num_cascades": self.stage_count()}
        with torch.device("meta"):
            expected = VarNet(**arguments).state_dict()
        wrong = next((key for key, value in state.items() if expected[key].shape != value.shape), None)
        if wrong is not None:
            dense = self.architecture
            raise SpadeInputError(
                f"the pruned widths are not those of a fastMRI VarNet ({wrong} is {list(state[wrong].shape)}, "
                f"VarNet(chans={widths['chans']}) has {list(expected[wrong].shape)}); ratios that keep one for chans "
                f"{dense['chans']}, {dense['pools']} pools: {fitting_ratios(dense['chans'], dense['pools'])} "
                f"(local pruning, prune.round_to=null)"
            )
        return LibraryFormat("fastmri.models.VarNet", arguments, state, "fastmri_varnet.pt")

    def priors(self) -> dict[str, nn.Module]:
        named = {f"cascade{i}": c.model.unet for i, c in zip(self.stage_ids(), self.varnet.cascades, strict=True)}
        named["sens"] = self.varnet.sens_net.norm_unet.unet
        return named

    def prior_output_layers(self) -> dict[str, list[nn.Module]]:
        return {name: [unet.up_conv[-1][-1]] for name, unet in self.priors().items()}
