"""A job from its composed config: preflight checks, the job context, then ``STAGES[cfg.stage]``."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from spade_pl.core.distributed import job_scope
from spade_pl.core.errors import require
from spade_pl.job.context import JobContext, open_job
from spade_pl.job.preflight import check_config, check_data
from spade_pl.job.stages import STAGES
from spade_pl.objectives.contractivity import check_solves_fixed_point
from spade_pl.pruning.depth import kept_stage_count
from spade_pl.training.lightning_module import freeze_priors


def use_tf32(allowed: bool) -> None:
    """TF32 tensor-core math for float32 matmuls and cuDNN convolutions (Ampere and newer GPUs) on or off."""
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.stage``; returns what it produced (checkpoint paths and/or results)."""
    with job_scope():
        ctx = prepare(cfg)
        return STAGES[cfg.stage].run(ctx)


def prepare(cfg: DictConfig) -> JobContext:
    """Check ``cfg``, seed, open the job (its data set up and checked against the network): everything before
    the first stage, shared by every stage."""
    require(cfg.stage in STAGES, f"stage={cfg.stage!r} is unknown; allowed: {', '.join(STAGES)}")
    check_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    use_tf32(bool(cfg.allow_tf32))
    ctx = open_job(cfg, set_up=STAGES[cfg.stage].splits)
    with torch.random.fork_rng(devices=[]):  # a throwaway network: no random stream of the job moves
        network = ctx.networks.new()
        if STAGES[cfg.stage].splits:
            check_data(cfg, ctx.datamodule, network)
        if cfg.prune.depth:  # a network without stages, or a depth that leaves none, stops before training
            kept_stage_count(network, cfg.prune.depth)
        if (cfg.get("finetune") or {}).get("contractivity_weight"):  # and so does one that solves no fixed point
            check_solves_fixed_point(network)
        if frozen := (cfg.get("finetune") or {}).get("frozen_priors"):
            freeze_priors(network, frozen)  # a name the network lacks stops the job before training
    return ctx
