"""SPADE structured pruning of the CNN priors inside an MBDL network (torch-pruning / DepGraph)."""

from spade_pl.pruning.prune import prune_network, replay_structure
from spade_pl.pruning.settings import PruneSettings

__all__ = ["PruneSettings", "prune_network", "replay_structure"]
