"""Distillation ('school' in the paper): ℓ(|f(y)|, stopgrad |f0(y)|); needs the dense teacher, no ground truth."""

from __future__ import annotations

import torch
from torch import Tensor

from spade_pl.batch import Sample
from spade_pl.errors import require
from spade_pl.finetune.base import Objective, ReconstructionLoss
from spade_pl.models.base import MBDLNetwork


class Distill(Objective):
    uses_ground_truth = False
    needs_teacher = True

    def __init__(self, loss: str = "ssim"):
        super().__init__()
        self.loss = ReconstructionLoss(loss)

    def forward(
        self, batch: Sample, student: MBDLNetwork, teacher: MBDLNetwork | None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        require(teacher is not None, "finetune=distill needs the dense teacher network, and none was given")
        physics = batch.physics()
        # only the target's *shape* (the recon size) is read, never its values
        with torch.no_grad():
            reference = batch.image(teacher(batch.y, physics))
        prediction = batch.image(student(batch.y, physics))
        loss = self.loss(prediction, reference)
        return loss, {"distill": loss.detach()}
