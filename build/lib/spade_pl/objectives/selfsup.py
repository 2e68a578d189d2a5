"""Self-supervised fine-tuning: measurement consistency + equivariant imaging (Chen, Tachella & Davies 2021),
as a preset of :mod:`spade_pl.objectives.terms`.

With ``x1 = f(y)``, a fixed operator ``A`` and transforms ``T_g`` (rotations or shifts,
:mod:`spade_pl.physics.equivariance`),
``x2 = T_g x1``, ``A_g`` = ``A`` transformed alike, ``y2 = A_g x2``, ``x3 = f(y2)``:

    loss = ‖A x1 − y‖² / ‖y‖²  +  w · mean_g [ ‖M_g (x3 − x2)‖² / ‖M_g x2‖²  +  ‖A_g x3 − y2‖² / ‖y2‖² ]
           (+ the splitting term, and optionally s · ‖|x1|‖₁ / (√N ‖|x1|‖₂): :func:`magnitude_sparsity`)

Every term is a *relative* error — squared as written, or with ``norm=1`` ``‖e‖₁ / ‖r‖₁``, which weighs the
many small background errors as much as the few large ones. ``x`` and ``A`` are the network's measurement view
(:meth:`~spade_pl.models.base.MBDLNetwork.measurement_view`): the image with ``A`` fixed (coil maps from the
data, or from the frozen dense teacher for a network that estimates them), or, for a network that predicts
multi-coil k-space (E2E-VarNet), the coil images with ``A`` = mask x FFT. ``A`` never moves during fine-tuning,
so the loss cannot be lowered by moving it. Needs only the measurements and ``A``: never the ground truth.
"""

from __future__ import annotations

from spade_pl.core.errors import require
from spade_pl.objectives.terms import (
    EquivariantImaging,
    MagnitudeSparsity,
    MeasurementConsistency,
    Splitting,
    Sum,
    magnitude_sparsity,
    relative_error,
)
from spade_pl.physics.equivariance import TransformGroup

__all__ = ["SelfSupervised", "magnitude_sparsity", "relative_error"]


class SelfSupervised(Sum):
    """Measurement consistency + EI (+ splitting, + sparsity) with the settings ``finetune=selfsup`` names:
    ``transform`` is the EI group (``None``: the physics' own, ``Physics.ei_transforms``), ``norm`` the p of
    every relative error. The terms are summed in the order mc, ei, sparsity, split; their values are logged
    as ``selfsup_<term>``.

    Training draws a new split every step; evaluation always uses the one drawn from ``eval_split_seed``, so
    ``val/loss`` compares epochs (``experiments/selfsup_criterion.py`` averages over many seeds instead).
    """

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
        named = {"ei_weight": ei_weight, "sparsity_weight": sparsity_weight, "split_weight": split_weight}
        for name, weight in named.items():  # checked under the names finetune=selfsup's config gives them
            require(weight >= 0, f"finetune.objective.{name}={weight} is invalid; allowed: >= 0")
        super().__init__(
            terms={
                "mc": MeasurementConsistency(norm),
                "ei": EquivariantImaging(transform, norm),
                "sparsity": MagnitudeSparsity(),
                "split": Splitting(split_fraction, eval_split_seed, norm),
            },
            weights={"mc": 1.0, "ei": ei_weight, "sparsity": sparsity_weight, "split": split_weight},
            log_prefix="selfsup_",
        )
