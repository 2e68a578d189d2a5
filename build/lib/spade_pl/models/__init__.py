"""MBDL reconstruction networks: every one is ``forward(y, physics) -> x_hat`` with named CNN priors."""

from spade_pl.models.base import MBDLNetwork
from spade_pl.models.deq import DEQ
from spade_pl.models.edsr import EDSR
from spade_pl.models.resunet import ResUNet
from spade_pl.models.unrolled import UnrolledHQS
from spade_pl.models.varnet.e2e import E2EVarNet
from spade_pl.models.varnet.given_maps import VarNetGivenMaps

__all__ = ["DEQ", "EDSR", "E2EVarNet", "MBDLNetwork", "ResUNet", "UnrolledHQS", "VarNetGivenMaps"]
