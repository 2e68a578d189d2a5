"""``stage=pretrain``: train the dense network (the main job's teacher, when none is given or cached)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spade_pl.job.context import JobContext


def pretrain(ctx: JobContext) -> Path:
    """Train a fresh dense network with ``pretrain``'s recipe; returns the selected checkpoint."""
    module = ctx.training.new_module(ctx.networks.new(), ctx.cfg.pretrain)
    return ctx.training.fit("pretrain", module, ctx.cfg.pretrain.max_epochs)


def stage_pretrain(ctx: JobContext) -> dict[str, Any]:
    return {"checkpoint": str(pretrain(ctx))}
