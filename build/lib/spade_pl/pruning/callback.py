"""The Lightning callback that applies SPADE pruning in ``setup``, before any optimizer exists.

torch-pruning replaces parameters; an optimizer built before pruning would silently stop training the
pruned layers, so pruning must happen in ``setup`` (Lightning builds optimizers after it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

import lightning as L

from spade_pl.core.errors import SpadeInputError
from spade_pl.pruning.prune import COUNTS, PruningResult, prune_network, totals
from spade_pl.pruning.settings import PruneSettings

log = logging.getLogger(__name__)


class SpadePruning(L.Callback):
    """Prune ``pl_module.network`` once, with a real batch from the datamodule, and log what changed.

    If the module is already pruned (e.g. restored from a pruned checkpoint), the stored structure must
    have the same settings; otherwise the checkpoint and the config disagree and the run stops.
    """

    def __init__(self, settings: PruneSettings):
        self.settings = settings
        self.result: PruningResult | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        existing = getattr(pl_module, "pruning_structure", None)
        if existing:
            if existing.get("settings", {}).get("ratio") != self.settings.ratio:
                raise SpadeInputError(
                    f"the module is already pruned with ratio {existing['settings']['ratio']}, "
                    f"but prune.ratio={self.settings.ratio}"
                )
            return
        loader = trainer.datamodule.val_dataloader() if trainer.datamodule is not None else None
        if loader is None:
            raise SpadeInputError("SPADE pruning needs a datamodule to draw one real input batch from")
        batch = next(iter(loader))
        started = time.perf_counter()
        result = prune_network(pl_module.network, batch.y, batch.physics(), self.settings)
        result.seconds = time.perf_counter() - started
        pl_module.pruning_structure = result.structure
        self.result = result
        for logger in trainer.loggers:
            logger.log_hyperparams({"prune": self.settings.as_dict()})
            logger.log_metrics(summary_metrics(result))
        log.info("[prune] %s", one_line_summary(result))


def summary_metrics(result: PruningResult) -> dict[str, float]:
    """Flat numbers for a logger: per prior and total parameters and MACs, before and after."""
    metrics: dict[str, float] = {}
    for name, rep in result.reports.items():
        for key, value in asdict(rep).items():
            if not key.startswith("widths"):
                metrics[f"prune/{name}/{key}"] = float(value)
    for key, value in totals(result.reports).items():
        metrics[f"prune/total/{key}"] = float(value)
    return metrics


def one_line_summary(result: PruningResult) -> str:
    if not result.reports:
        return "nothing pruned (ratio 0 or no priors selected)"
    total = totals(result.reports)
    before, after, macs_b, macs_a = (total[key] for key in COUNTS)
    return (
        f"pruned {len(result.reports)} prior(s): params {before:,} -> {after:,} ({after / before:.1%}), "
        f"MACs per forward of the pruned priors {macs_b:,} -> {macs_a:,} ({macs_a / macs_b:.1%})"
    )
