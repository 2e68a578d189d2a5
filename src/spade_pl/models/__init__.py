"""MBDL reconstruction networks: every one is ``forward(y, physics) -> x_hat`` with named CNN priors."""

from spade_pl.models.base import MBDLNetwork
from spade_pl.models.varnet import E2EVarNet

__all__ = ["E2EVarNet", "MBDLNetwork"]
