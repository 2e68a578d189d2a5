"""What every stage of a job receives: its config, output folder, datamodule, network factory, fine-tuning
recipe, pruning settings, trainers, and whether this process writes. Stages are functions of a
:class:`JobContext`; they never reach back into the pipeline that made it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, open_dict

from spade_pl.core.atomic_io import check_writable
from spade_pl.core.distributed import is_writer
from spade_pl.core.instantiate import build
from spade_pl.data.splits import SplitDataModule
from spade_pl.job.preflight import network_choice
from spade_pl.job.recipe import FinetuneRecipe
from spade_pl.pruning.settings import PruneSettings
from spade_pl.training.resume import ResumeSource, stage_stamp
from spade_pl.training.teacher_cache import TeacherCache
from spade_pl.training.trainers import Training
from spade_pl.weights.network_factory import NetworkFactory


@dataclass
class JobContext:
    """One job. Under DDP every rank builds its own context (Lightning re-runs the command per rank) and goes
    through the same stages; only the writer (rank 0) writes reports, benchmarks, caches and summaries."""

    cfg: DictConfig
    output_dir: Path
    datamodule: SplitDataModule
    networks: NetworkFactory
    recipe: FinetuneRecipe
    prune: PruneSettings
    training: Training
    writer: bool

    @property
    def resumed(self) -> bool:
        return self.training.resume.folder is not None


def open_job(cfg: DictConfig, set_up: bool = True) -> JobContext:
    """The context of ``cfg``'s job: the output folder (an interrupted run's own with ``resume_from``), the
    datamodule (``set_up``: every split's files checked before any training), and the trainers."""
    if cfg.resume_from is not None and Path(cfg.resume_from).is_dir():
        with open_dict(cfg):  # continue in the interrupted run's folder (trainer paths interpolate it)
            cfg.paths.output_dir = str(Path(cfg.resume_from).resolve())
    output_dir = Path(cfg.paths.output_dir)
    check_writable(output_dir)
    datamodule = build(cfg.data)
    network_class = get_class(cfg.network.model._target_)
    datamodule.require(network_class.needs_for(datamodule.physics_type), network_choice(cfg))
    datamodule.evaluating_on(cfg.get("eval_split", "test"))
    datamodule.prepare_data()
    if set_up:
        datamodule.setup()
    recipe, prune = FinetuneRecipe.from_config(cfg.finetune), PruneSettings.from_config(cfg.prune)
    resume = ResumeSource(cfg.resume_from, training_stamps(cfg, recipe, prune))
    writer = is_writer()
    return JobContext(
        cfg=cfg,
        output_dir=output_dir,
        datamodule=datamodule,
        networks=NetworkFactory(cfg.network.model, cfg.get("ckpt_prefix")),
        recipe=recipe,
        prune=prune,
        training=Training(cfg, output_dir, datamodule, resume, writer),
        writer=writer,
    )


def training_stamps(cfg: DictConfig, recipe: FinetuneRecipe, prune: PruneSettings) -> dict[str, dict[str, Any]]:
    """The training stages this job will run, with the stamp their checkpoints carry (see resume.py)."""
    stages: list[tuple[str, bool]] = []
    if cfg.stage == "pretrain":
        stages.append(("pretrain", False))
    elif cfg.stage == "spade":
        if not cfg.ckpt_path and not TeacherCache(cfg.paths.cache_dir, cfg).path.is_file():
            stages.append(("pretrain", False))
        if prune.prunes and recipe.trains:
            stages.append((f"finetune-{recipe.name}", True))
    return {stage: stage_stamp(stage, cfg, pruned) for stage, pruned in stages}
