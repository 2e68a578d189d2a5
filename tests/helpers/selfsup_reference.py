"""The self-supervised objective as one class, before it became a preset of terms (spade_pl.objectives.terms):
kept verbatim (but for probing ``coil_kspace``, which left the network contract) to pin the preset's loss and
gradients to it.

Self-supervised fine-tuning: measurement consistency + equivariant imaging (Chen, Tachella & Davies 2021).

With ``x1 = f(y)``, a fixed operator ``A`` and transforms ``T_g`` (rotations or shifts, :mod:`.transforms`),
``x2 = T_g x1``, ``A_g`` = ``A`` with the coil maps transformed alike, ``y2 = A_g x2``, ``x3 = f(y2)``:

    loss = ‖A x1 − y‖² / ‖y‖²  +  w · mean_g [ ‖M_g (x3 − x2)‖² / ‖M_g x2‖²  +  ‖A_g x3 − y2‖² / ‖y2‖² ]
           (+ the splitting term, and optionally s · ‖|x1|‖₁ / (√N ‖|x1|‖₂): :func:`magnitude_sparsity`)

Every term is a *relative* error — squared as written, or with ``norm=1`` ``‖e‖₁ / ‖r‖₁``, which weighs the
many small background errors as much as the few large ones — per slice, then averaged, so
the three sit on one scale whatever the data's scale, the number of coils or the sampling rate (``M_g`` masks
the corners an arbitrary-angle rotation leaves empty; it is 1 everywhere for the default 90°/180°/270° group).
``A`` stays fixed during fine-tuning: its coil maps come from the data, or, for a network that estimates them
(E2E-VarNet), from the frozen dense teacher when there is one (else the student's own estimate, without
gradient) — so the loss cannot be lowered by moving ``A``. Needs only the measurements and ``A``: never the
ground truth.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spade_pl.core.errors import SpadeInputError, require
from spade_pl.models.base import MBDLNetwork
from spade_pl.objectives.base import Objective
from spade_pl.objectives.terms import magnitude_sparsity, relative_error
from spade_pl.physics.base import Physics
from spade_pl.physics.equivariance import TransformGroup
from spade_pl.physics.mri import MultiCoilMRI, complex_planes, fft2c, from_complex_planes, ifft2c
from spade_pl.physics.sample import Sample


class SelfSupervised(Objective):
    """Measurement consistency + EI; ``transform`` is the group (``None``: the physics' own,
    ``Physics.ei_transforms``), ``norm`` the p of every relative error.

    Training draws a new split every step; evaluation always uses the one drawn from ``eval_split_seed``, so
    ``val/loss`` compares epochs (``experiments/selfsup_criterion.py`` averages over many seeds instead).
    """

    uses_ground_truth = False

    def __init__(
        self,
        transform: TransformGroup | None = None,
        ei_weight: float = 1.0,
        split_weight: float = 0.0,
        split_fraction: float = 0.4,
        eval_split_seed: int = 0,
        sparsity_weight: float = 0.0,
        norm: float = 2,
    ):
        super().__init__()
        require(norm >= 1, f"finetune.objective.norm={norm} is invalid; allowed: >= 1 (2: squared errors)")
        require(ei_weight >= 0, f"finetune.objective.ei_weight={ei_weight} is invalid; allowed: >= 0")
        require(sparsity_weight >= 0, f"finetune.objective.sparsity_weight={sparsity_weight} is invalid; allowed: >= 0")
        require(split_weight >= 0, f"finetune.objective.split_weight={split_weight} is invalid; allowed: >= 0")
        require(
            0 < split_fraction < 1,
            f"finetune.objective.split_fraction={split_fraction} is invalid; allowed: 0 < fraction < 1",
        )
        self.transform = transform
        self.ei_weight = float(ei_weight)
        self.split_weight = float(split_weight)
        self.split_fraction = float(split_fraction)
        self.eval_split_seed = int(eval_split_seed)
        self.sparsity_weight = float(sparsity_weight)
        self.norm = float(norm)

    @staticmethod
    def fixed_operator(y: Tensor, physics: Physics, student: MBDLNetwork, teacher: MBDLNetwork | None) -> Physics:
        """``A`` as the network assumes it (e.g. estimated coil maps), from the teacher when there is one,
        frozen: nothing in it moves while the student trains."""
        with torch.no_grad():
            operator = (teacher if teacher is not None else student).measurement_physics(y, physics)
        try:
            return operator.frozen()
        except ValueError as err:
            raise SpadeInputError(
                f"finetune=selfsup needs the forward operator A ({err}); {type(student).__name__} does not "
                f"estimate what is missing: compute ESPIRiT maps for the data"
            ) from None

    def forward(
        self, batch: Sample, student: MBDLNetwork, teacher: MBDLNetwork | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        y, physics = batch.y, batch.physics()
        # computed once from the centre of y, which the split below keeps whole: its forward reuses it
        calibration = student.calibration(y, physics)
        coils = student.coil_kspace(y, physics, calibration) if hasattr(student, "coil_kspace") else None
        if coils is None:  # image domain: x = f(y), A = P F S with fixed maps
            operator = self.fixed_operator(y, physics, student, teacher)
            x1 = student(y, physics)

            def estimate(y_: Tensor, physics_: Physics, calibration_: Tensor | None = None) -> Tensor:
                return student(y_, physics_)

            def measure(x: Tensor, operator_: Physics) -> Tensor:
                return operator_.A(x)

            to_planes, from_planes = operator.to_channels, operator.from_channels
        else:  # coil domain (networks that predict multi-coil k-space): x = coil images, A = P F, no maps needed
            operator, x1 = physics, ifft2c(coils)

            def estimate(y_: Tensor, physics_: MultiCoilMRI, calibration_: Tensor | None = None) -> Tensor:
                return ifft2c(student.coil_kspace(y_, physics_, calibration_))

            def measure(x: Tensor, operator_: MultiCoilMRI) -> Tensor:
                return operator_.apply_mask(fft2c(x))

            def to_planes(x: Tensor) -> Tensor:
                return complex_planes(x)

            def from_planes(planes: Tensor) -> Tensor:
                return from_complex_planes(planes, x1)

        mc = relative_error(measure(x1, operator), y, norm=self.norm)
        ei = x1.new_zeros(())
        group = self.transform or physics.ei_transforms()
        for g in group.sample(student.training):

            def act(planes: Tensor, g=g) -> Tensor:
                return group.apply(planes, g)

            x2 = from_planes(act(to_planes(x1)))
            transformed = operator.transformed(act)
            y2 = measure(x2, transformed)
            x3 = estimate(y2, transformed)
            valid = group.valid(to_planes(x1), g)
            ei = (
                ei
                + relative_error(to_planes(x3), to_planes(x2), valid, self.norm)
                + relative_error(measure(x3, transformed), y2, norm=self.norm)
            )
        ei = ei / group.num_transforms
        loss = mc + self.ei_weight * ei
        logs = {"selfsup_mc": mc.detach(), "selfsup_ei": ei.detach()}
        if self.sparsity_weight > 0:
            sparsity = magnitude_sparsity(to_planes(x1))
            loss = loss + self.sparsity_weight * sparsity
            logs["selfsup_sparsity"] = sparsity.detach()
        if self.split_weight > 0:
            generator = None if student.training else torch.Generator().manual_seed(self.eval_split_seed)
            kept, held_out = physics.split(self.split_fraction, generator)
            x_kept = estimate(kept.apply_mask(y), kept, calibration)
            held_operator = operator.with_mask(held_out.mask)
            split = relative_error(measure(x_kept, held_operator), held_operator.apply_mask(y), norm=self.norm)
            loss = loss + self.split_weight * split
            logs["selfsup_split"] = split.detach()
        return loss, logs
