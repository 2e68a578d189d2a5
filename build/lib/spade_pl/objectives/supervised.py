"""Supervised objective ℓ(|f(y)|, x): dense pre-training and the 'supervised' fine-tuning strategy."""

from __future__ import annotations

from torch import Tensor

from spade_pl.models.base import MBDLNetwork
from spade_pl.objectives.base import Objective, ReconstructionLoss
from spade_pl.physics.sample import Sample


class Supervised(Objective):
    uses_ground_truth = True

    def __init__(self, loss: str = "ssim"):
        super().__init__()
        self.loss = ReconstructionLoss(loss)

    def forward(
        self, batch: Sample, student: MBDLNetwork, teacher: MBDLNetwork | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        loss, logs, _ = self.scored(batch, student, teacher)
        return loss, logs

    def scored(
        self, batch: Sample, student: MBDLNetwork, teacher: MBDLNetwork | None = None
    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        prediction = batch.image(student(batch.y, batch.physics()))
        loss = self.loss(prediction, batch.target)
        return loss, {"supervised": loss.detach()}, prediction
