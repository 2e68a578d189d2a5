"""Fine-tuning the pruned network: SPADE's start (the dense network's kept weights) or a fresh one (the
from-scratch baselines), on the training split or, for test-time adaptation (``finetune.data=test``), on the
measurements of the very volumes it is scored on (never their ground truth)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf

from spade_pl.core.errors import require
from spade_pl.core.seeding import derive_seed
from spade_pl.models.base import MBDLNetwork
from spade_pl.pruning.prune import replay_structure
from spade_pl.training.lightning_module import ReconModule
from spade_pl.training.trainers import weight_averaging

if TYPE_CHECKING:
    from spade_pl.job.pipeline import Run

TEST_TIME = "test-time"


def finetune(r: Run, pruned: ReconModule, teacher: MBDLNetwork) -> tuple[MBDLNetwork, Path]:
    """Fine-tune a copy of the pruned network on the training split, or, for test-time adaptation
    (``finetune.data=test``), on the measurements of the test split (never its ground truth)."""
    name = r.cfg.finetune.name
    recipe = adaptation_recipe(r.cfg.finetune) if adapts_to_test(r.cfg.finetune) else r.cfg.finetune
    start = (
        fresh_network(r, pruned.pruning_structure)
        if recipe.get("init", "pruned") == "scratch"
        else copy.deepcopy(pruned.network)
    )
    module = r.training.new_module(start, recipe, teacher=teacher, structure=pruned.pruning_structure)
    datamodule, epochs = None, r.cfg.finetune.max_epochs
    if recipe.get("budget", "finetune") == "total":  # the teacher's epochs too: equal total compute
        epochs += r.cfg.pretrain.max_epochs
    if adapts_to_test(r.cfg.finetune):
        require(
            not module.objective.uses_ground_truth,
            f"finetune.data=test adapts to the test split's measurements, and finetune={name} would read its "
            f"ground truth; allowed with finetune=distill or finetune=selfsup",
        )
        datamodule = r.datamodule.fitting_on(r.datamodule.eval_split)
        epochs = recipe.max_epochs
    ckpt = r.training.fit(f"finetune-{name}", module, epochs, datamodule, weight_averaging(recipe.get("ema_decay")))
    return r.load_network(ckpt)[0], ckpt


def fresh_network(r: Run, structure: dict[str, Any]) -> MBDLNetwork:
    """The pruned architecture with a fresh initialisation (``finetune.init=scratch``: the from-scratch
    baselines), drawn from a seed of its own so that it is neither the teacher's initialisation nor moved by
    what ran before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(r.cfg.seed, "scratch"))
        return replay_structure(r.new_network(), structure)


def adaptation_recipe(recipe: DictConfig) -> DictConfig:
    """``finetune`` with ``finetune.test_time`` merged onto it (each key given there replaces the recipe's):
    adapting to a few test volumes from the one-shot pruned start wants other epochs and another step size than
    the training split, predicts held-out columns worse with the EI weight chosen for the training split, and
    its few hundred steps leave a weight average that lags behind (the runs: experiments/LOG.md)."""
    plain = OmegaConf.to_container(recipe, resolve=True)
    overrides = plain.pop("test_time", None) or {}
    return OmegaConf.merge(OmegaConf.create(plain), OmegaConf.create(overrides))


def adapts_to_test(recipe: DictConfig) -> bool:
    return recipe.get("data", "train") == "test"  # train | test, checked in config_checks


def finetuned_name(recipe: DictConfig) -> str:
    """How reports name the fine-tuned model; test-time adaptation is labelled as such everywhere."""
    suffix = f" ({TEST_TIME})" if adapts_to_test(recipe) else ""
    return (recipe.get("label") or f"pruned + {recipe.name}") + suffix
