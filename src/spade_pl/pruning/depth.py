"""Depth pruning: remove whole stages of an unrolled or equilibrium network (E2E-VarNet's cascades, unrolled HQS
iterations, the residual blocks of the DEQ's prior), before its channels are pruned.

Removing a stage takes its kernels, FFTs and data-consistency step with it, at full efficiency, where a narrow
convolution runs far below its MAC rate; nothing else is touched. Which stages go is an importance like the
channels': ``measured`` removes, one at a time, the stage whose removal changes the network's output on the
pruning batch least (greedy), ``uniform`` keeps evenly spaced stages (the first and the last), ``last`` removes
the last ones (truncation).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from spade_pl.core.distributed import from_rank_zero
from spade_pl.core.errors import require
from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.base import Physics
from spade_pl.pruning.settings import PruneSettings


def kept_stage_count(network: MBDLNetwork, depth: float) -> int:
    """How many of ``network``'s stages ``prune.depth`` keeps (``floor(N (1 - depth))``, as channels are kept);
    one line when the network declares no stages or none would be left."""
    total = network.stage_count()
    name = type(network).__name__
    require(
        total > 0,
        f"prune.depth={depth} needs removable stages and {name} declares none; allowed: prune.depth=0, or a network "
        f"that declares them (stages_at: e2e_varnet, varnet, du_sr, deq and their sizes)",
    )
    kept = math.floor(total * (1 - depth) + 1e-9)
    require(
        kept >= 1,
        f"prune.depth={depth} would leave 0 of the {total} stages of {name}; allowed here: depth < {1 - 1 / total:.4g}",
    )
    return kept


def choose_stages(network: MBDLNetwork, y: Tensor, physics: Physics, settings: PruneSettings) -> list[int]:
    """The positions of the stages to keep, ascending."""
    total, keep = network.stage_count(), kept_stage_count(network, settings.depth)
    if settings.depth_importance == "last":
        return list(range(keep))
    if settings.depth_importance == "uniform":  # evenly spaced, the last (the final refinement) always kept
        return [total - 1] if keep == 1 else [round(i * (total - 1) / (keep - 1)) for i in range(keep)]
    return from_rank_zero(measured_stages(network, y, physics, keep))  # under DDP each rank has its own batch


def output_change(network: MBDLNetwork, kept: list[int], y: Tensor, physics: Physics, reference: Tensor) -> float:
    """Relative change of the output when only the stages at ``kept`` remain."""
    trial = copy.deepcopy(network)
    trial.keep_stages(kept)
    return float((trial(y, physics) - reference).norm() / reference.norm().clamp_min(1e-12))


def measured_stages(network: MBDLNetwork, y: Tensor, physics: Physics, keep: int) -> list[int]:
    """Greedy: remove, one at a time, the stage whose removal changes the output on ``y`` least."""
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            reference = network(y, physics)
            kept = list(range(network.stage_count()))
            while len(kept) > keep:
                changes = {s: output_change(network, [k for k in kept if k != s], y, physics, reference) for s in kept}
                kept.remove(min(changes, key=changes.get))
    finally:
        network.train(was_training)
    return kept
