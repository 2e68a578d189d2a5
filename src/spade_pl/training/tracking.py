"""Experiment tracking: per-stage loggers that carry the whole config, and one summary record per job.

Every stage of a job (pre-training, each test, fine-tuning) gets its own logger run (W&B ``job_type`` = the
stage), and the job ends with a ``summary`` run holding the headline numbers (:func:`summary_record`) and the
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

# how the pipeline names a model -> its role in a job, whatever the problem and strategy; the problem's classical
# reconstruction (results.json's first model, named by problem.baseline) is "baseline", the fine-tuned one
# (results.json's finetuned_model) "finetuned"
ROLES = {"dense": "dense", "pruned (one-shot)": "one_shot", "model": "model"}
BENCHMARK_KEYS = ("speedup_forward", "speedup_priors", "mac_bound_forward", "measured_over_bound")


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


def summary_record(results: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of one job as flat keys: ``dense/psnr``, ``finetuned/delta_psnr``, ``speedup_forward``...

    Models are named by role, not by strategy, so records of a sweep line up in one table or scatter plot.
    """
    finetuned = results.get("finetuned_model")  # results.json names its fine-tuned model and its strategy
    strategy = results.get("strategy", "none")
    record: dict[str, Any] = {"ratio": results.get("prune", {}).get("ratio"), "strategy": strategy}
    if "seed" in results:
        record["seed"] = results["seed"]
        record["setting"] = " ".join(sorted(o for o in results.get("overrides", []) if not o.startswith("seed=")))
    if finetuned:
        record["finetuned_label"] = finetuned
    if transfer := results.get("transfer"):  # scored on other measurements than trained on: says so in every row
        record["scored_on"] = " ".join(f"{k}={v}" for k, v in transfer.get("eval_mask", transfer).items())
    dense_psnr = results["models"].get("dense", {}).get("mean", {}).get("psnr")
    baseline = next(iter(results["models"]))  # the report puts the problem's classical reconstruction first
    for name, entry in results["models"].items():
        role = "finetuned" if name == finetuned else "baseline" if name == baseline else ROLES.get(name, name)
        record[f"{role}/psnr"] = entry["mean"]["psnr"]
        record[f"{role}/ssim"] = entry["mean"]["ssim"]
        if dense_psnr is not None and role != "dense":
            record[f"{role}/delta_psnr"] = entry["mean"]["psnr"] - dense_psnr
    bench = results.get("benchmark")
    if bench:
        record.update({key: bench[key] for key in BENCHMARK_KEYS})
        for model in ("dense", "pruned"):
            record[f"{model}/params"] = bench[model]["params"]
            record[f"{model}/macs_forward"] = bench[model]["macs_forward"]
            record[f"{model}/forward_ms"] = bench[model]["forward_ms"]
            if "peak_forward_bytes" in bench[model]:  # benchmarks written before memory was measured lack it
                record[f"{model}/peak_forward_mib"] = bench[model]["peak_forward_bytes"] / 2**20
        if "memory_ratio" in bench:
            record["memory_ratio"] = bench["memory_ratio"]
    return record


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
