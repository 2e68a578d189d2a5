"""Experiment tracking: per-stage loggers that carry the whole config, and one summary record per job.

Every stage of a job (pre-training, each test, fine-tuning) gets its own logger run (W&B ``job_type`` = the
stage), and the job ends with a ``summary`` run holding the headline numbers
(:func:`spade_pl.reporting.results.summary_record`) and the
reconstruction panel. All of them carry the job's resolved config (W&B shows it with flattened keys:
``prune.ratio``, ``finetune.name``, ``choice.network``, ...), grouped by the sweep (or the single run) — what
W&B's grouping, filters, parallel-coordinates and scatter panels need.
:mod:`spade_pl.reporting.collect` reads the same records.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf


def hydra_runtime() -> DictConfig | None:
    return HydraConfig.get() if HydraConfig.initialized() else None


def run_identity(cfg: DictConfig, output_dir: Path) -> tuple[str, str]:
    """(group, job): a sweep's jobs share the group ``<task>-<sweep folder>``; a single run is its own group."""
    hydra_cfg = hydra_runtime()
    if hydra_cfg is not None and hydra_cfg.mode == RunMode.MULTIRUN:
        return f"{cfg.task_name}-{output_dir.parent.name}", hydra_cfg.job.override_dirname or output_dir.name
    return f"{cfg.task_name}-{output_dir.name}", output_dir.name


def job_config(cfg: DictConfig, group: str, job: str) -> dict[str, Any]:
    """The job's resolved config plus Hydra's group choices (``choice.network=deq``) and the job's identity.

    Nested, as W&B stores configs: its runs table, filters, grouping and panels show the keys flattened
    (``prune.ratio``, ``finetune.name``), and wandb-workspaces addresses them that way
    (:mod:`spade_pl.reporting.dashboard`).
    """
    config = {
        key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        for key, value in cfg.items()
        if key != "hydra"  # Hydra's own node (present in composed test configs) is not the job's config
    }
    hydra_cfg = hydra_runtime()
    if hydra_cfg is not None:
        config["choice"] = {k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra/")}
    config["job"] = {"group": group, "name": job}
    return config


class Tracking:
    """Builds each stage's loggers from ``cfg.logger`` with the job's identity and config attached."""

    def __init__(self, cfg: DictConfig, output_dir: Path, build: Any):
        self.cfg = cfg
        self.build = build  # hydra instantiate that turns our input errors into one line
        self.group, self.job = run_identity(cfg, output_dir)
        self.config = job_config(cfg, self.group, self.job)
        self._open: list[Logger] = []  # closed by finish(): Lightning hides them from trainer.loggers in fast_dev_run

    def loggers(self, stage: str) -> list[Logger]:
        """Fresh loggers for one stage: CSV/TensorBoard version = stage; W&B one run per stage, grouped."""
        loggers = []
        for lcfg in (self.cfg.get("logger") or {}).values():
            if lcfg is None:
                continue
            if lcfg._target_.endswith("WandbLogger"):
                extra = {"name": f"{self.job}/{stage}", "job_type": stage, "group": lcfg.get("group") or self.group}
            else:
                extra = {"version": stage}
            logger = self.build(lcfg, **extra)
            logger.log_hyperparams(self.config)
            loggers.append(logger)
        self._open.extend(loggers)
        return loggers

    def finish(self) -> None:
        """Flush and close every logger opened so far (W&B allows one active run per process)."""
        for logger in self._open:
            logger.save()
            if isinstance(logger, WandbLogger):
                logger.experiment.finish()
        self._open.clear()

    def log_summary(self, record: Mapping[str, Any], image: Path | None = None) -> None:
        """A ``summary`` run per job: the record as metrics and W&B run summary, plus the reconstruction panel."""
        loggers = self.loggers("summary")
        numbers = {k: float(v) for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        for logger in loggers:
            logger.log_metrics(numbers)
            if isinstance(logger, WandbLogger):
                logger.experiment.summary.update(dict(record))
                if image is not None:
                    logger.log_image(key="reconstructions", images=[str(image)])
        self.finish()
