"""``stage=test``: score ``ckpt_path`` (dense or pruned) on the held-out split."""

from __future__ import annotations

from typing import Any

from spade_pl.core.errors import require
from spade_pl.job.context import JobContext
from spade_pl.job.report import Scored, report
from spade_pl.reporting.results import LABELS, MODEL


def stage_test(ctx: JobContext) -> dict[str, Any]:
    require(ctx.cfg.ckpt_path is not None, "stage=test needs ckpt_path=/path/to/model.ckpt")
    network = ctx.networks.load(ctx.cfg.ckpt_path)[0]
    return report(ctx, [Scored(MODEL, LABELS[MODEL], ctx.training.test(LABELS[MODEL], network))])
