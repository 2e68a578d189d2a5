"""SPADE structured pruning of the CNN priors inside an MBDL network (torch-pruning / DepGraph)."""

from spade_pl.pruning.spade import PruneSettings, prune_network, replay_structure

__all__ = ["PruneSettings", "prune_network", "replay_structure"]
