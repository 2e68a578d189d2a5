"""The LightningModule: an MBDL network, a training objective, metrics and image panels.

The module never branches on the fine-tuning strategy: the objective (a loss module) is the only
thing that changes between dense pre-training, supervised, distill and self-supervised fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from spade_pl.core.distributed import gather_unique
from spade_pl.core.errors import RunFailure, SpadeInputError, require
from spade_pl.models.base import MBDLNetwork
from spade_pl.objectives.base import Objective
from spade_pl.physics.sample import Sample
from spade_pl.pruning.prune import replay_structure
from spade_pl.reporting.metrics import slice_metrics
from spade_pl.reporting.volume_scores import VolumeScores, more_slices, summarise
from spade_pl.training.image_logging import log_panel, panel
from spade_pl.weights.load import NETWORK_CONFIG_KEY, PRUNING_KEY


class NonFiniteLossError(RunFailure):
    """Training produced a NaN/inf loss; the last good checkpoint is kept and training stops."""


def freeze_priors(network: MBDLNetwork, names: Sequence[str]) -> None:
    """Take the priors ``names`` of ``network`` out of training (no gradient); one line for a name it lacks."""
    priors = network.priors()
    unknown = sorted(set(names) - set(priors))
    require(
        not unknown,
        f"finetune.frozen_priors={list(names)} names no prior of this network ({', '.join(unknown)}); "
        f"allowed: {', '.join(priors)}",
    )
    for name in names:
        priors[name].requires_grad_(False)


class ReconModule(L.LightningModule):
    """Trains ``network`` with ``objective``; validation and test report PSNR/SSIM against ground truth.

    ``teacher`` (the frozen dense network for distillation) is deliberately *not* a registered
    sub-module: it is not in ``parameters()`` (so never in the optimizer) nor in the saved state dict.
    ``frozen_priors`` names priors of ``network`` that keep their weights (no gradient, not in the optimizer),
    e.g. ``sens``: E2E-VarNet's sensitivity net, which pruning leaves dense. ``warm_start``: the test pass tells
    the network which slice comes next (:meth:`~spade_pl.models.base.MBDLNetwork.next_slice_of`), so an iterative
    one starts each slice from the previous slice's solution (the loader runs a volume's slices in order).
    """

    def __init__(
        self,
        network: MBDLNetwork,
        objective: Objective,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        metric_convention: str = "fastmri",
        metric_border: int = 0,
        num_log_images: int = 2,
        teacher: MBDLNetwork | None = None,
        frozen_priors: Sequence[str] = (),
        warm_start: bool = False,
    ):
        super().__init__()
        freeze_priors(network, frozen_priors)
        self.save_hyperparameters(ignore=["network", "objective", "optimizer", "scheduler", "teacher"])
        self.network = network
        self.objective = objective
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.__dict__["teacher"] = teacher.eval().requires_grad_(False) if teacher is not None else None
        #: torch-pruning history of the pruned priors (None = dense); saved in checkpoints, replayed on load
        self.pruning_structure: dict[str, Any] | None = None
        #: the network's config (``network.model``), saved in checkpoints: what a later load checks them against
        self.network_config: dict[str, Any] | None = None
        #: the test pass's per-volume scores, filled as the slices stream in
        self._scores = VolumeScores(metric_convention, metric_border)
        self.test_results: dict[str, Any] = {}
        #: one test slice (the middle slice of the first test volume) of each image, for the report's panel
        self.example: dict[str, np.ndarray] = {}

    # ---- plumbing -------------------------------------------------------------------------------
    def forward(self, batch: Sample) -> Tensor:
        return self.network(batch.y, batch.physics())

    def _move_teacher(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device).eval()

    def on_fit_start(self) -> None:
        self._move_teacher()

    def on_validation_start(self) -> None:
        self._move_teacher()

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=[p for p in self.network.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer=optimizer)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.pruning_structure:
            checkpoint[PRUNING_KEY] = self.pruning_structure
        if self.network_config is not None:
            checkpoint[NETWORK_CONFIG_KEY] = self.network_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rebuild the pruned structure before Lightning loads the (smaller) weights into the network."""
        stored = checkpoint.get(PRUNING_KEY)
        if stored and self.pruning_structure is None:
            replay_structure(self.network, stored)
            self.pruning_structure = stored
        elif stored and any(stored.get(k) != self.pruning_structure.get(k) for k in ("priors", "depth")):
            raise SpadeInputError("the checkpoint's pruned structure does not match the pruned network of this run")

    # ---- training / validation ------------------------------------------------------------------
    def training_step(self, batch: Sample, batch_idx: int) -> Tensor:
        loss, logs = self.objective(batch, self.network, self.teacher)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); "
                f"stopping, the last good checkpoint is kept — lower the learning rate or check the data"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.fname))
        self._log_terms("train", logs, batch)
        self._log_solver("train")
        return loss

    def _log_terms(self, split: str, terms: dict[str, Tensor], batch: Sample, sync_dist: bool = False) -> None:
        """The objective's terms beside its loss (e.g. selfsup's mc / ei / split): one dashboard curve each, so a
        user sees which term moves; ground-truth-free whenever the objective is."""
        self.log_dict({f"{split}/{k}": v for k, v in terms.items()}, batch_size=len(batch.fname), sync_dist=sync_dist)

    def _log_solver(self, split: str) -> None:
        """Iterative networks (DEQ) expose their last solve; its cost and convergence go to the logger."""
        stats = self.network.solver_stats
        if stats:
            self.log_dict({f"{split}/solver_{k}": float(v) for k, v in stats.items()}, batch_size=1)

    def validation_step(self, batch: Sample, batch_idx: int) -> None:
        loss, logs, prediction = self.objective.scored(batch, self.network, self.teacher)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch.fname), sync_dist=True)
        self._log_terms("val", logs, batch, sync_dist=True)
        self._log_solver("val")
        if not self.objective.uses_ground_truth:
            return  # ground-truth-free strategies never see the target, not even for monitoring
        if prediction is None:
            prediction = batch.image(self(batch))
        metrics = slice_metrics(prediction, batch.target)
        self.log_dict(
            {f"val/{k}": v for k, v in metrics.items()}, prog_bar=True, batch_size=len(batch.fname), sync_dist=True
        )
        if batch_idx < self.hparams.num_log_images:
            self._log_panel(f"val/panel_{batch_idx}", batch, prediction)

    # ---- test ------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._scores = VolumeScores(self.hparams.metric_convention, self.hparams.metric_border)

    def test_step(self, batch: Sample, batch_idx: int) -> None:
        if self.hparams.warm_start and len(set(batch.fname)) == 1:
            self.network.next_slice_of(batch.fname[0], int(batch.slice_num[0]))
        prediction = batch.image(self(batch))
        self._log_solver("test")
        stats = self.network.solver_stats
        iterations = int(stats["iterations"]) if stats else None
        baseline = batch.baseline()
        for i, fname in enumerate(batch.fname):
            arrays = (t[i].float().cpu().numpy() for t in (prediction, baseline, batch.target))
            self._scores.add(fname, int(batch.slice_num[i]), *arrays, iterations=iterations)
        if batch_idx < self.hparams.num_log_images:
            self._log_panel(f"test/panel_{batch_idx}", batch, prediction)

    def on_test_epoch_end(self) -> None:
        """Every volume scored once: each rank scored its own volumes as they streamed in; the ranks exchange
        those numbers (a volume a sampler padded onto two ranks counts once), never images."""
        records = gather_unique(self._scores.finish(), better=more_slices)
        self.test_results = summarise(records, self.hparams.metric_convention)
        mean = self.test_results["mean"]
        self.log_dict({f"test/{k}": v for k, v in mean.items()}, sync_dist=True)  # equal on every rank
        self.example = self._scores.example

    def _log_panel(self, key: str, batch: Sample, prediction: Tensor) -> None:
        target = batch.target[0]
        image = panel(batch.baseline()[0], prediction[0], target, (prediction[0] - target).abs())
        log_panel(self.loggers, key, image, self.global_step)
