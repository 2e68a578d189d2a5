"""Training objectives as interchangeable loss modules: supervised, distill (teacher), selfsup (EI)."""

from spade_pl.finetune.base import Objective, ReconstructionLoss
from spade_pl.finetune.distill import Distill
from spade_pl.finetune.selfsup import SelfSupervised
from spade_pl.finetune.supervised import Supervised

__all__ = ["Distill", "Objective", "ReconstructionLoss", "SelfSupervised", "Supervised"]
