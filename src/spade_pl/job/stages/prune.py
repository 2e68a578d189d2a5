"""``stage=prune`` and ``stage=benchmark``: the one-shot pruned network of a dense one, scored or timed."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from spade_pl.job.context import JobContext
from spade_pl.job.report import Scored, report
from spade_pl.job.stages.benchmark import benchmark, dense_network
from spade_pl.job.stages.structure_search import choose_structure
from spade_pl.models.base import MBDLNetwork
from spade_pl.pruning.callback import SpadePruning
from spade_pl.pruning.prune import PruningResult, prune_network
from spade_pl.pruning.settings import PruneSettings
from spade_pl.reporting.report import pruning_markdown
from spade_pl.reporting.results import DENSE, LABELS, ONE_SHOT
from spade_pl.training.lightning_module import ReconModule

log = logging.getLogger(__name__)


def prune_one_shot(
    ctx: JobContext, dense: MBDLNetwork, settings: PruneSettings
) -> tuple[ReconModule, PruningResult, Path]:
    """Prune a copy of ``dense`` (the callback, on a real val batch), test it, save the pruned checkpoint."""
    callback = SpadePruning(settings)
    path = ctx.output_dir / "checkpoints" / "prune" / "pruned.ckpt"
    module = ctx.training.test(LABELS[ONE_SHOT], copy.deepcopy(dense), callbacks=[callback], save_to=path)
    log.info("[prune] wrote the pruned checkpoint %s", path)
    return module, callback.result, path


def pruning_record(result: PruningResult, path: Path) -> dict[str, Any]:
    """What results.json keeps of a pruning: the checkpoint, each prior's report, the network's parameters."""
    return {
        "pruned_checkpoint": str(path),
        "pruning": {name: vars(rep) for name, rep in result.reports.items()},
        "network_params": list(result.network_params),
        **({"depth": result.structure["depth"]} if "depth" in result.structure else {}),
    }


def stage_prune(ctx: JobContext) -> dict[str, Any]:
    """Prune the dense ``ckpt_path`` one-shot, write the pruned checkpoint, report the drop."""
    dense, extra = dense_network(ctx), {}
    settings, markdown = choose_structure(ctx, dense, extra)
    pruned, pruning, path = prune_one_shot(ctx, dense, settings)
    markdown += "\n" + pruning_markdown(pruning.reports, pruning.network_params, pruning.structure.get("depth"))
    scored = [
        Scored(DENSE, LABELS[DENSE], ctx.training.test(LABELS[DENSE], dense)),
        Scored(ONE_SHOT, LABELS[ONE_SHOT], pruned),
    ]
    return report(ctx, scored, {**extra, **pruning_record(pruning, path)}, markdown)


def stage_benchmark(ctx: JobContext) -> dict[str, Any]:
    """Prune a copy of the dense network on one real batch, then time both in this process."""
    dense, extra = dense_network(ctx), {}
    settings, markdown = choose_structure(ctx, dense, extra)
    batch = next(iter(ctx.datamodule.val_dataloader()))  # the datamodule was set up when the job opened
    pruned = copy.deepcopy(dense)
    prune_network(pruned, batch.y, batch.physics(), settings)
    return benchmark(ctx, dense, pruned, extra, markdown) or {}
