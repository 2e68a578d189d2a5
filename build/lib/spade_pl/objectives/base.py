"""The one interface every training objective implements, and the image-domain loss ℓ they share."""

from __future__ import annotations

from abc import ABC, abstractmethod

from fastmri.losses import SSIMLoss
from torch import Tensor, nn

from spade_pl.core.errors import require
from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.sample import Sample
from spade_pl.reporting.metrics import planes


class ReconstructionLoss(nn.Module):
    """ℓ(prediction, reference) on real images ``(B, h, w)`` (MRI magnitudes) or ``(B, C, h, w)`` (colour).

    ``ssim`` (1 − fastMRI SSIM, data range = the reference's per-image maximum), ``l1``, ``smooth_l1``,
    ``l1_ssim`` = (1 − SSIM) + ‖p − r‖₁ / ‖r‖₁: both terms unitless, so neither dominates whatever the data's
    scale; L1 keeps intensities right, SSIM keeps the structure that L1 alone lets a small network blur; and
    ``mse`` = ‖p − r‖² / ‖r‖², the squared error PSNR measures, made unitless like the others (a plain MSE
    scales with the square of the data's scale, and at a small enough scale Adam's epsilon damps the steps).
    """

    KINDS = ("ssim", "l1", "smooth_l1", "l1_ssim", "mse")

    def __init__(self, kind: str = "ssim"):
        super().__init__()
        require(kind in self.KINDS, f"loss kind {kind!r} is unknown; allowed: {', '.join(self.KINDS)}")
        self.kind = kind
        self.ssim = SSIMLoss() if "ssim" in kind else None

    def forward(self, prediction: Tensor, reference: Tensor) -> Tensor:
        if self.kind == "l1":
            return nn.functional.l1_loss(prediction, reference)
        if self.kind == "smooth_l1":
            return nn.functional.smooth_l1_loss(prediction, reference)
        if self.kind == "mse":
            return (prediction - reference).square().sum() / reference.square().sum().clamp_min(1e-24)
        data_range = reference.flatten(1).amax(dim=1)
        per_plane = data_range.repeat_interleave(planes(reference).shape[0] // reference.shape[0])
        structure = self.ssim(planes(prediction), planes(reference), per_plane)
        if self.kind == "ssim":
            return structure
        return structure + (prediction - reference).abs().sum() / reference.abs().sum().clamp_min(1e-12)


class Objective(nn.Module, ABC):
    """``objective(batch, student, teacher) -> (loss, logs)``: the only thing that differs between strategies.

    ``uses_ground_truth`` says whether the objective may read ``batch.target``; objectives that do not
    are also used for ground-truth-free validation and checkpoint selection.
    """

    uses_ground_truth: bool = True
    needs_teacher: bool = False

    @abstractmethod
    def forward(
        self, batch: Sample, student: MBDLNetwork, teacher: MBDLNetwork | None
    ) -> tuple[Tensor, dict[str, Tensor]]: ...

    def scored(
        self, batch: Sample, student: MBDLNetwork, teacher: MBDLNetwork | None
    ) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
        """The loss, its terms, and the student's image of ``batch`` where the loss is computed from it (else
        None): validation scores that image against the ground truth instead of running the network again."""
        return *self(batch, student, teacher), None
