"""Fine-tuning the pruned network: SPADE's start (the dense network's kept weights) or a fresh one (the
from-scratch baselines), on the training split or, for test-time adaptation (``finetune.data=test``), on the
measurements of the very volumes it is scored on (never their ground truth)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from spade_pl.core.errors import require
from spade_pl.core.seeding import derive_seed
from spade_pl.job.context import JobContext
from spade_pl.models.base import MBDLNetwork
from spade_pl.training.lightning_module import ReconModule
from spade_pl.training.trainers import weight_averaging
from spade_pl.weights.network_factory import NetworkFactory


def finetune(ctx: JobContext, pruned: ReconModule, teacher: MBDLNetwork) -> tuple[MBDLNetwork, Path]:
    """Fine-tune a copy of the pruned network as ``ctx.recipe`` says; returns the selected network and its
    checkpoint."""
    recipe = ctx.recipe
    start = (
        fresh_network(ctx.networks, pruned.pruning_structure, ctx.cfg.seed)
        if recipe.init == "scratch"
        else copy.deepcopy(pruned.network)
    )
    module = ctx.training.new_module(start, recipe.node, teacher=teacher, structure=pruned.pruning_structure)
    datamodule = None
    if recipe.adapts_to_test:
        require(
            not module.objective.uses_ground_truth,
            f"finetune.data=test adapts to the test split's measurements, and finetune={recipe.name} would read its "
            f"ground truth; allowed with finetune=distill or finetune=selfsup",
        )
        datamodule = ctx.datamodule.fitting_on(ctx.datamodule.eval_split)
    epochs = recipe.epochs(ctx.cfg.finetune.max_epochs, ctx.cfg.pretrain.max_epochs)
    averaging = weight_averaging(recipe.node.get("ema_decay"))
    ckpt = ctx.training.fit(f"finetune-{recipe.name}", module, epochs, datamodule, averaging)
    return ctx.networks.load(ckpt)[0], ckpt


def fresh_network(networks: NetworkFactory, structure: dict[str, Any], seed: int) -> MBDLNetwork:
    """The pruned architecture with a fresh initialisation (``finetune.init=scratch``: the from-scratch
    baselines), drawn from a seed of its own so that it is neither the teacher's initialisation nor moved by
    what ran before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "scratch"))
        return networks.pruned_like(structure)
