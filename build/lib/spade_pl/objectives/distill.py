"""Distillation ('school' in the paper): ℓ(|f(y)|, stopgrad |f0(y)|); needs the dense teacher, no ground truth."""

from __future__ import annotations

import torch
from torch import Tensor

from spade_pl.core.errors import require
from spade_pl.models.base import MBDLNetwork
from spade_pl.objectives.base import Objective, ReconstructionLoss
from spade_pl.physics.sample import Sample


class Distill(Objective):
    """``ℓ(|f(y)|, |f0(y)|)``, plus ``cascade_weight`` times the mean of the same loss between the two networks'
    images after each earlier cascade (unrolled networks, whose ``cascade_images`` are not None): the pruned
    cascade ``i`` is taught what the dense cascade ``i`` produced, not only what the last one did."""

    uses_ground_truth = False
    needs_teacher = True

    def __init__(self, loss: str = "ssim", cascade_weight: float = 0.0):
        super().__init__()
        require(cascade_weight >= 0, f"finetune.objective.cascade_weight={cascade_weight} is invalid; allowed: >= 0")
        self.loss = ReconstructionLoss(loss)
        self.cascade_weight = float(cascade_weight)

    def _images(self, network: MBDLNetwork, batch: Sample) -> list[Tensor]:
        """The compared images: the output, preceded by every earlier cascade's when those are distilled too."""
        if not self.cascade_weight:
            return [batch.image(network(batch.y, batch.physics()))]
        cascades = network.cascade_images(batch.y, batch.physics())
        require(
            cascades is not None,
            f"finetune.objective.cascade_weight={self.cascade_weight} needs a network with cascades (e2e_varnet, "
            f"varnet); {type(network).__name__} has none; allowed here: 0",
        )
        return [batch.image(x) for x in cascades]

    def forward(
        self, batch: Sample, student: MBDLNetwork, teacher: MBDLNetwork | None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        require(teacher is not None, "finetune=distill needs the dense teacher network, and none was given")
        # only the target's *shape* (the recon size) is read, never its values
        with torch.no_grad():
            references = self._images(teacher, batch)
        predictions = self._images(student, batch)
        loss = self.loss(predictions[-1], references[-1])
        logs = {"distill": loss.detach()}
        if len(predictions) > 1:
            cascades = torch.stack([self.loss(p, r) for p, r in zip(predictions[:-1], references[:-1], strict=True)])
            loss = loss + self.cascade_weight * cascades.mean()
            logs["distill_cascades"] = cascades.mean().detach()
        return loss, logs
