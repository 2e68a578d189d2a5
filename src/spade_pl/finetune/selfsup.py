"""Self-supervised fine-tuning: measurement consistency + equivariant imaging (Chen, Tachella & Davies 2021).

``ℓ1(A f(y), y) + Σ_φ ‖f(A_φ φ f(y)) − φ f(y)‖² + ‖A_φ f(A_φ φ f(y)) − A_φ φ f(y)‖²`` with φ random
rotations; the coil maps rotate with the image (``A_φ`` uses ``φ S``), the sampling mask stays. Needs only
the measurements and the forward operator: never the ground truth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from spade_pl.batch import physics_of
from spade_pl.data.transform import MRISample
from spade_pl.errors import require
from spade_pl.finetune.base import Objective
from spade_pl.finetune.rotate import rotate_complex
from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.mri import MultiCoilMRI


class SelfSupervised(Objective):
    """``angles``: null = random integer degrees in [1, 359] (SPADE reference), or a list to draw from.

    In eval mode (validation, checkpoint selection) the angles come from a fixed generator, so the
    ground-truth-free validation loss compares epochs on equal terms.
    """

    uses_ground_truth = False

    def __init__(self, num_transforms: int = 1, angles: list[float] | None = None, ei_weight: float = 1.0):
        super().__init__()
        require(num_transforms >= 1, f"finetune.objective.num_transforms={num_transforms} is invalid; allowed: >= 1")
        self.num_transforms = num_transforms
        self.angles = list(angles) if angles is not None else None
        self.ei_weight = ei_weight

    def _draw_angles(self, training: bool) -> list[float]:
        generator = None if training else torch.Generator().manual_seed(0)
        if self.angles is None:
            return [float(a) for a in torch.randint(1, 360, (self.num_transforms,), generator=generator)]
        picks = torch.randint(0, len(self.angles), (self.num_transforms,), generator=generator)
        return [float(self.angles[i]) for i in picks]

    def forward(
        self, batch: MRISample, student: MBDLNetwork, teacher: MBDLNetwork | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        y, physics = batch.masked_kspace, physics_of(batch)
        operator = student.measurement_physics(y, physics)
        require(
            operator.maps is not None,
            f"finetune=selfsup needs the forward operator A, i.e. coil maps: this data has none and "
            f"{type(student).__name__} does not estimate them (compute ESPIRiT maps for the data)",
        )
        x1 = student(y, physics)
        dc = F.l1_loss(operator.A(x1), y)
        ei = x1.new_zeros(())
        for degrees in self._draw_angles(student.training):
            x2 = rotate_complex(x1, degrees)
            rotated = MultiCoilMRI(
                mask=physics.mask,
                maps=rotate_complex(operator.maps, degrees),
                num_low_frequencies=physics.num_low_frequencies,
            )
            y2 = rotated.A(x2)
            x3 = student(y2, rotated)
            ei = ei + F.mse_loss(x3, x2) + F.mse_loss(rotated.A(x3), y2)
        ei = ei / self.num_transforms
        loss = dc + self.ei_weight * ei
        return loss, {"selfsup_dc": dc.detach(), "selfsup_ei": ei.detach()}
