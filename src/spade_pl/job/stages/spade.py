"""``stage=spade``, the main job: dense teacher (cached) -> one-shot prune -> fine-tune -> test all -> benchmark
-> report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spade_pl.benchmark.table import benchmark_markdown
from spade_pl.core.atomic_io import atomic_write_json
from spade_pl.core.distributed import rank
from spade_pl.job.context import JobContext
from spade_pl.job.recipe import TEST_TIME
from spade_pl.job.report import Scored, report
from spade_pl.job.stages.benchmark import benchmark
from spade_pl.job.stages.finetune import finetune
from spade_pl.job.stages.pretrain import pretrain
from spade_pl.job.stages.prune import prune_one_shot, pruning_record
from spade_pl.job.stages.structure_search import choose_structure
from spade_pl.reporting.report import cost_markdown, pruning_markdown
from spade_pl.reporting.results import DENSE, FINETUNED, LABELS, ONE_SHOT
from spade_pl.training.teacher_cache import TeacherCache


def dense_checkpoint(ctx: JobContext) -> Path:
    """``ckpt_path`` if given, else the cached dense teacher for this config, trained once if allowed."""
    cfg = ctx.cfg
    if cfg.ckpt_path:
        return Path(cfg.ckpt_path)
    cache = TeacherCache(cfg.paths.cache_dir, cfg)
    path = cache.get_or_train(
        lambda: pretrain(ctx), allowed=cfg.pretrain.train_if_missing, run_id=str(ctx.output_dir), rank=rank()
    )
    cost_file = cache.folder / "cost.json"  # what training the shared teacher cost, for every job reusing it
    costs = ctx.training.costs
    if "pretrain" in costs and ctx.writer:
        atomic_write_json(cost_file, costs["pretrain"])
    elif cost_file.is_file():
        costs["pretrain"] = {**json.loads(cost_file.read_text()), "cached": True}
    return path


def run_spade(ctx: JobContext) -> dict[str, Any]:
    """dense teacher -> one-shot prune -> fine-tune -> benchmark -> report."""
    dense_path = dense_checkpoint(ctx)
    dense = ctx.networks.dense(dense_path)
    scored = [Scored(DENSE, LABELS[DENSE], ctx.training.test(LABELS[DENSE], dense))]
    extra: dict[str, Any] = {"dense_checkpoint": str(dense_path)}
    settings, markdown = choose_structure(ctx, dense, extra)
    extra["prune"] = settings.as_dict()
    if settings.prunes:
        pruned, pruning, pruned_path = prune_one_shot(ctx, dense, settings)
        scored.append(Scored(ONE_SHOT, LABELS[ONE_SHOT], pruned))
        extra.update(pruning_record(pruning, pruned_path))
        markdown += "\n" + pruning_markdown(pruning.reports, pruning.network_params, pruning.structure.get("depth"))
        ctx.training.costs["prune"] = {"wall_s": pruning.seconds}
        final = pruned.network
        recipe = ctx.recipe
        if recipe.trains:
            final, ckpt = finetune(ctx, pruned, teacher=dense)
            label = recipe.model_label
            extra.update(finetuned_checkpoint=str(ckpt), finetuned_model=label, strategy=recipe.name)
            scored.append(Scored(FINETUNED, label, ctx.training.test(label, final)))
            if recipe.adapts_to_test:
                markdown += (
                    f"\n{TEST_TIME}: the pruned network was fine-tuned on the measurements of the very volumes it is "
                    f"scored on (scan-specific adaptation, the SPADE paper's protocol; no ground truth read).\n"
                )
        bench = benchmark(ctx, dense, final)
        if bench is not None:
            extra["benchmark"] = bench
            markdown += "\n" + benchmark_markdown(bench)
    if ctx.training.costs:
        extra["cost"] = ctx.training.costs
        markdown += "\n" + cost_markdown(ctx.training.costs)
    return report(ctx, scored, extra, markdown)
