"""Training objectives as interchangeable loss modules: supervised, distill (teacher), selfsup (EI), and any
weighted sum of terms (:mod:`spade_pl.objectives.terms`)."""

from spade_pl.objectives.base import Objective, ReconstructionLoss
from spade_pl.objectives.contractivity import Contractivity
from spade_pl.objectives.distill import Distill
from spade_pl.objectives.selfsup import SelfSupervised
from spade_pl.objectives.supervised import Supervised
from spade_pl.objectives.terms import (
    EquivariantImaging,
    MagnitudeSparsity,
    MeasurementConsistency,
    Splitting,
    StepContext,
    Sum,
    Term,
)

__all__ = [
    "Contractivity",
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
