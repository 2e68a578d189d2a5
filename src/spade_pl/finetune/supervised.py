"""Supervised objective ℓ(|f(y)|, x): dense pre-training and the 'supervised' fine-tuning strategy."""

from __future__ import annotations

from torch import Tensor

from spade_pl.batch import magnitude, physics_of
from spade_pl.data.transform import MRISample
from spade_pl.finetune.base import Objective, ReconstructionLoss
from spade_pl.models.base import MBDLNetwork


class Supervised(Objective):
    uses_ground_truth = True

    def __init__(self, loss: str = "ssim"):
        super().__init__()
        self.loss = ReconstructionLoss(loss)

    def forward(
        self, batch: MRISample, student: MBDLNetwork, teacher: MBDLNetwork | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        prediction = magnitude(student(batch.masked_kspace, physics_of(batch)), batch.target)
        loss = self.loss(prediction, batch.target)
        return loss, {"supervised": loss.detach()}
