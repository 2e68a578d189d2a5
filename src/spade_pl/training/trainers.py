"""The Lightning side of a job: trainers with the job's callbacks and loggers, resume-aware fit and test, and
what each training stage cost (wall time, epochs, optimizer steps, device)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from spade_pl.core.atomic_io import atomic_torch_save, atomic_write_json
from spade_pl.core.distributed import place_on_gpus
from spade_pl.core.errors import require
from spade_pl.core.instantiate import build
from spade_pl.data.splits import SplitDataModule
from spade_pl.models.base import MBDLNetwork
from spade_pl.objectives.contractivity import with_contractivity
from spade_pl.training.lightning_module import ReconModule
from spade_pl.training.resume import DONE_FILE, ResumeSource, StageCheckpointing, stage_stamp
from spade_pl.training.tracking import Tracking
from spade_pl.weights.checkpoint_files import SafeCheckpointIO, read_checkpoint

log = logging.getLogger(__name__)
#: the training config of a module that only evaluates
NO_TRAINING = OmegaConf.create({})


def weight_averaging(decay: float | None) -> list[Callback]:
    """Fine-tuning with an exponential moving average of the weights (``finetune.ema_decay``; none for
    ``None``): Lightning's callback swaps the average in for validation and into every checkpoint, so
    ``val/loss`` selects among averaged models and the selected checkpoint is one; the average smooths the
    step-to-step noise of a large learning rate, which the self-supervised loss shows most."""
    return [] if decay is None else [EMAWeightAveraging(decay=float(decay))]


class Training:
    """Trainers and the training and test stages of one job (its config, output folder, datamodule, resume
    source); only the writer (rank 0) keeps records. ``validation`` holds the best monitored value of the
    last training stage, ``costs`` what each stage cost."""

    def __init__(
        self, cfg: DictConfig, output_dir: Path, datamodule: SplitDataModule, resume: ResumeSource, writer: bool
    ):
        self.cfg, self.output_dir, self.datamodule, self.resume, self.writer = (
            cfg,
            output_dir,
            datamodule,
            resume,
            writer,
        )
        self.tracking = Tracking(cfg, output_dir, build)
        self.gpus = place_on_gpus(cfg.trainer.devices, cfg.trainer.accelerator)
        if self.gpus:
            torch.cuda.set_device(self.gpus[0])  # the benchmark and other plain-torch work follow the trainer
        #: best ``val/loss`` (and any other monitored value) of the last training stage, for sweepers
        self.validation: dict[str, float] = {}
        #: what each training stage cost (wall time, epochs, optimizer steps, device), for the report
        self.costs: dict[str, dict[str, Any]] = {}

    def new_module(
        self,
        network: MBDLNetwork,
        train_cfg: DictConfig,
        teacher: MBDLNetwork | None = None,
        structure: dict[str, Any] | None = None,
    ) -> ReconModule:
        module = ReconModule(
            network=network,
            objective=with_contractivity(
                build(train_cfg.objective) if train_cfg.get("objective") else None,
                train_cfg.get("contractivity_weight", 0.0),
            ),
            optimizer=build(train_cfg.optimizer) if train_cfg.get("optimizer") else None,
            scheduler=build(train_cfg.scheduler) if train_cfg.get("scheduler") else None,
            metric_convention=self.cfg.problem.metric_convention,
            metric_border=int(self.cfg.problem.get("metric_border", 0)),
            teacher=teacher,
            frozen_priors=tuple(train_cfg.get("frozen_priors") or ()),
            warm_start=bool(self.cfg.warm_start),
        )
        module.pruning_structure = structure
        module.network_config = OmegaConf.to_container(self.cfg.network.model, resolve=True)
        return module

    def trainer(self, stage: str, max_epochs: int = 1, extra_callbacks: list[Callback] | None = None) -> L.Trainer:
        callbacks = list(extra_callbacks or [])
        for name, ccfg in (self.cfg.get("callbacks") or {}).items():
            if ccfg is None:
                continue
            extra = {"dirpath": str(self.output_dir / "checkpoints" / stage)} if name == "model_checkpoint" else {}
            callbacks.append(build(ccfg, **extra))
        placement = {"devices": self.gpus} if self.gpus else {}
        return build(
            self.cfg.trainer,
            max_epochs=max_epochs,
            callbacks=callbacks,
            logger=self.tracking.loggers(stage),
            plugins=[SafeCheckpointIO()],
            **placement,
        )

    def fit(
        self,
        stage: str,
        module: ReconModule,
        max_epochs: int,
        datamodule: SplitDataModule | None = None,
        callbacks: list[Callback] | None = None,
    ) -> Path:
        """Train ``module``; return the checkpoint of the selected (best by ``val/loss``, else last) model.

        In a resumed run folder a finished stage is not trained again, and an interrupted one continues."""
        stage_dir = self.output_dir / "checkpoints" / stage
        done = self.resume.stage_folder_done(stage_dir)
        if done is not None:
            record = json.loads(done.read_text())
            require(Path(record["checkpoint"]).is_file(), f"{done} names a checkpoint that is gone; rerun the stage")
            self.validation = record["validation"]
            self.costs[stage] = record.get("cost", {})
            log.info("[%s] finished before the interruption: reusing %s", stage, record["checkpoint"])
            return Path(record["checkpoint"])
        resume = self.resume.checkpoint_for(stage, stage_dir)
        log.info("[%s] training for %d epoch(s), output in %s", stage, max_epochs, self.output_dir)
        if resume is not None:
            log.info("[%s] resuming from %s", stage, resume)
        stamp = stage_stamp(stage, self.cfg, pruned=module.pruning_structure is not None)
        trainer = self.trainer(stage, max_epochs, [StageCheckpointing(stamp, self.cfg.seed), *(callbacks or [])])
        started = time.perf_counter()
        try:
            trainer.fit(module, datamodule=datamodule or self.datamodule, ckpt_path=resume, weights_only=True)
        finally:
            self.tracking.finish()
        self.costs[stage] = {
            "wall_s": time.perf_counter() - started,  # this process's part, when the stage was resumed
            "epochs": trainer.current_epoch,
            "optimizer_steps": trainer.global_step,
            "device": str(trainer.strategy.root_device),
            "devices": trainer.num_devices,
        }
        final = stage_dir / "final.ckpt"
        trainer.save_checkpoint(final, weights_only=False)  # the full training state, optimizer and loops too
        checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        best = Path(checkpoint.best_model_path) if checkpoint is not None and checkpoint.best_model_path else None
        selected = best if best is not None and best.is_file() else final
        if checkpoint is not None and checkpoint.best_model_score is not None:
            self.validation = {checkpoint.monitor: float(checkpoint.best_model_score)}
        if self.writer:
            record = {"checkpoint": str(selected), "validation": self.validation, "cost": self.costs[stage]}
            atomic_write_json(stage_dir / DONE_FILE, record)
        log.info("[%s] done; selected checkpoint %s", stage, selected)
        return selected

    def test(
        self, name: str, network: MBDLNetwork, callbacks: list[Callback] | None = None, save_to: Path | None = None
    ) -> ReconModule:
        """Evaluate ``network`` on the test split (``module.test_results``); optionally save it afterwards.

        The results are kept in ``tests/<name>.pt``; a resumed run reuses them instead of evaluating again
        (not for a test that also prunes through ``callbacks``: its network is needed, not only its scores)."""
        stage = f"test-{name.replace(' ', '_')}"
        module = self.new_module(network, NO_TRAINING)
        kept = self.output_dir / "tests" / f"{stage}.pt"
        if self.resume.folder is not None and kept.is_file() and not callbacks:
            stored = read_checkpoint(kept)
            module.test_results = stored["results"]
            module.example = {k: v.numpy() for k, v in stored["example"].items()}
            log.info("[test] %s was evaluated before the interruption: reusing %s", name, kept)
            return module
        log.info("[test] evaluating %s on the held-out %s volumes", name, self.datamodule.eval_split)
        trainer = self.trainer(stage, extra_callbacks=callbacks)
        try:
            trainer.test(module, datamodule=self.datamodule, verbose=False)
        finally:
            self.tracking.finish()
        if save_to is not None:
            trainer.save_checkpoint(save_to, weights_only=False)
        if self.writer:
            example = {k: torch.from_numpy(v) for k, v in module.example.items()}
            atomic_torch_save(kept, {"results": module.test_results, "example": example})
        return module
