"""The stages of a spade-pl run, driven by the composed Hydra config.

``stage=pretrain``  train the dense network (resume with ``ckpt_path``)
``stage=test``      evaluate ``ckpt_path`` on the held-out test split
``stage=spade``     the whole job: dense teacher (cached) -> test dense -> report
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from spade_pl.checkpoints import load_network_weights, read_checkpoint
from spade_pl.data.datamodule import FastMRIDataModule
from spade_pl.errors import SpadeInputError, require
from spade_pl.models.base import MBDLNetwork
from spade_pl.module import ReconModule
from spade_pl.report import split_test_results, write_results

log = logging.getLogger(__name__)
STAGES = ("spade", "pretrain", "test")


class Run:
    """One Hydra run: its config, its output folder, its datamodule (built once, shared by every stage)."""

    def __init__(self, cfg: DictConfig):
        require(cfg.stage in STAGES, f"stage={cfg.stage!r} is unknown; allowed: {', '.join(STAGES)}")
        self.cfg = cfg
        self.output_dir = Path(cfg.paths.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.datamodule: FastMRIDataModule = instantiate(cfg.data)

    # ---- building blocks -------------------------------------------------------------------------
    def new_network(self) -> MBDLNetwork:
        return instantiate(self.cfg.network.model)

    def load_network(self, ckpt_path: str | Path) -> MBDLNetwork:
        network = self.new_network()
        return load_network_weights(network, read_checkpoint(ckpt_path), ckpt_path)

    def new_module(self, network: MBDLNetwork, train_cfg: DictConfig, teacher: MBDLNetwork | None = None) -> ReconModule:
        objective = instantiate(train_cfg.objective) if train_cfg.get("objective") else None
        return ReconModule(
            network=network,
            objective=objective,
            optimizer=instantiate(train_cfg.optimizer) if train_cfg.get("optimizer") else None,
            scheduler=instantiate(train_cfg.scheduler) if train_cfg.get("scheduler") else None,
            metric_convention=self.cfg.problem.metric_convention,
            teacher=teacher,
        )

    def loggers(self, stage: str) -> list[Logger]:
        """Fresh loggers for one stage: CSV/TensorBoard version = stage; W&B one run per stage, grouped."""
        loggers = []
        for lcfg in (self.cfg.get("logger") or {}).values():
            if lcfg is None:
                continue
            is_wandb = lcfg._target_.endswith("WandbLogger")
            extra = {"name": f"{self.output_dir.name}-{stage}", "job_type": stage} if is_wandb else {"version": stage}
            loggers.append(instantiate(lcfg, **extra))
        return loggers

    def trainer(self, stage: str, max_epochs: int = 1) -> L.Trainer:
        callbacks = []
        for name, ccfg in (self.cfg.get("callbacks") or {}).items():
            if ccfg is None:
                continue
            extra = {"dirpath": str(self.output_dir / "checkpoints" / stage)} if name == "model_checkpoint" else {}
            callbacks.append(instantiate(ccfg, **extra))
        return instantiate(self.cfg.trainer, max_epochs=max_epochs, callbacks=callbacks, logger=self.loggers(stage))

    @staticmethod
    def close(trainer: L.Trainer) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.finish()

    def fit(self, stage: str, module: ReconModule, max_epochs: int, resume: str | None = None) -> Path:
        """Train ``module``; return the checkpoint of the selected (best by ``val/loss``, else last) model."""
        log.info("[%s] training for %d epoch(s), output in %s", stage, max_epochs, self.output_dir)
        trainer = self.trainer(stage, max_epochs)
        trainer.fit(module, datamodule=self.datamodule, ckpt_path=resume)
        self.close(trainer)
        final = self.output_dir / "checkpoints" / stage / "final.ckpt"
        trainer.save_checkpoint(final)
        checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        best = Path(checkpoint.best_model_path) if checkpoint is not None and checkpoint.best_model_path else None
        selected = best if best is not None and best.is_file() else final
        log.info("[%s] done; selected checkpoint %s", stage, selected)
        return selected

    def test(self, name: str, network: MBDLNetwork) -> dict[str, Any]:
        """Evaluate ``network`` on the test split; returns ReconModule.test_results."""
        log.info("[test] evaluating %s on the held-out test volumes", name)
        module = self.new_module(network, OmegaConf.create({}))
        trainer = self.trainer(f"test-{name}")
        trainer.test(module, datamodule=self.datamodule, verbose=False)
        self.close(trainer)
        return module.test_results

    # ---- the dense teacher -------------------------------------------------------------------------
    def teacher_key(self) -> str:
        """Everything that shapes the dense model: network, data, mask, pre-training recipe, trainer, seed."""
        shaping = {
            k: OmegaConf.to_container(self.cfg[k], resolve=True) if isinstance(self.cfg[k], DictConfig) else self.cfg[k]
            for k in ("network", "data", "problem", "pretrain", "trainer", "seed")
        }
        shaping["data"].pop("num_workers", None)  # how fast data loads does not shape the model
        blob = json.dumps(shaping, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def dense_checkpoint(self) -> Path:
        """The cached dense teacher for this config, trained (once) if missing and allowed."""
        cached = Path(self.cfg.paths.cache_dir) / "teachers" / self.teacher_key() / "dense.ckpt"
        if self.cfg.ckpt_path:
            return Path(self.cfg.ckpt_path)
        if cached.is_file():
            log.info("[teacher] reusing the cached dense model %s", cached)
            return cached
        if not self.cfg.pretrain.train_if_missing:
            raise SpadeInputError(
                f"no dense teacher for this config at {cached} and pretrain.train_if_missing=false; "
                f"pass ckpt_path=/path/to/dense.ckpt or allow training"
            )
        selected = self.pretrain()
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        shutil.copyfile(selected, tmp)
        tmp.replace(cached)
        OmegaConf.save(self.cfg, cached.parent / "config.yaml", resolve=False)
        return cached

    # ---- stages ------------------------------------------------------------------------------------
    def pretrain(self) -> Path:
        module = self.new_module(self.new_network(), self.cfg.pretrain)
        resume = self.cfg.ckpt_path if self.cfg.stage == "pretrain" else None
        return self.fit("pretrain", module, self.cfg.pretrain.max_epochs, resume=resume)

    def report(self, models: dict[str, dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Combine test results of several models (zero-filled taken from the first) and write them out."""
        first = next(iter(models.values()))
        zero, _ = split_test_results(first)
        results: dict[str, Any] = {
            "stage": self.cfg.stage,
            "convention": first["convention"],
            "num_volumes": len(first["per_volume"]),
            "models": {"zero-filled": zero, **{n: split_test_results(r)[1] for n, r in models.items()}},
            **(extra or {}),
        }
        text = write_results(self.output_dir, results)
        print("\n" + text, flush=True)
        log.info("[report] wrote %s/results.{json,md,png}", self.output_dir)
        return results


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.stage``; returns what it produced (checkpoint path and/or results)."""
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")
    r = Run(cfg)
    if cfg.stage == "pretrain":
        return {"checkpoint": str(r.pretrain())}
    if cfg.stage == "test":
        require(cfg.ckpt_path is not None, "stage=test needs ckpt_path=/path/to/model.ckpt")
        return r.report({"model": r.test("model", r.load_network(cfg.ckpt_path))})
    dense_ckpt = r.dense_checkpoint()
    return r.report({"dense": r.test("dense", r.load_network(dense_ckpt))}, extra={"dense_checkpoint": str(dense_ckpt)})
