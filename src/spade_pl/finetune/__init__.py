"""Training objectives as interchangeable loss modules: supervised, distill (teacher), selfsup (EI), and any
weighted sum of terms (:mod:`spade_pl.finetune.terms`)."""

from spade_pl.finetune.base import Objective, ReconstructionLoss
from spade_pl.finetune.distill import Distill
from spade_pl.finetune.selfsup import SelfSupervised
from spade_pl.finetune.supervised import Supervised
from spade_pl.finetune.terms import (
    EquivariantImaging,
    MagnitudeSparsity,
    MeasurementConsistency,
    Splitting,
    StepContext,
    Sum,
    Term,
)

__all__ = [
    "Distill",
    "EquivariantImaging",
    "MagnitudeSparsity",
    "MeasurementConsistency",
    "Objective",
    "ReconstructionLoss",
    "SelfSupervised",
    "Splitting",
    "StepContext",
    "Sum",
    "Supervised",
    "Term",
]
