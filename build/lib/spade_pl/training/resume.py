"""Resuming interrupted training exactly, and only in the stage that wrote the checkpoint.

Exactness: every random draw of training is a function of where it happens: the order of an epoch and each
sample's random mask / patch / noise of (seed, epoch, position) (``data/sampling.py``), each training or
validation step's EI transforms and SSDU splits of (seed, stage, epoch, step). A job resumed from the
checkpoint of epoch k therefore draws in epoch k + 1 exactly what the uninterrupted job drew, whatever happened
(or did not happen) in the process before, with or without data-loader workers.

Scope: each training stage stamps its checkpoints with who wrote them (stage name, the network config, the
prune settings of a pruned stage); a checkpoint resumes only a stage with the same stamp.

``resume_from`` takes either form:

* a run folder (``logs/<task>/runs/<date>``): the job continues in that folder; finished training stages are
  skipped (their selected checkpoint is reused), an interrupted one continues from its ``last.ckpt``;
* a checkpoint a training stage wrote (``<run>/checkpoints/<stage>/last.ckpt``): that stage resumes from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from spade_pl.core.errors import SpadeInputError, require
from spade_pl.core.seeding import derive_seed, reseed
from spade_pl.pruning.settings import PruneSettings
from spade_pl.weights.checkpoint_files import read_checkpoint

STAMP_KEY = "spade_pl_stage"
#: written into a stage's checkpoint folder when the stage has finished (its selection and validation score)
DONE_FILE = "selected.json"


def stage_stamp(stage: str, cfg: DictConfig, pruned: bool) -> dict[str, Any]:
    """What identifies the checkpoints of ``stage`` in this job: the stage, the network, the prune settings."""
    return {
        "stage": stage,
        "network": OmegaConf.to_container(cfg.network.model, resolve=True),
        "prune": PruneSettings.from_config(cfg.prune).as_dict() if pruned else None,
    }


def stamp_mismatch(found: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """The first difference between two stamps, as ``key (found vs expected)``; None when they agree."""
    for section in ("stage", "network", "prune"):
        a, b = found.get(section), expected.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    return f"{section}.{key} ({a.get(key)!r} in the checkpoint vs {b.get(key)!r} now)"
        elif a != b:
            return f"{section} ({a!r} in the checkpoint vs {b!r} now)"
    return None


def read_stamp(path: Path) -> dict[str, Any]:
    """The stamp of a checkpoint a training stage wrote; a one-line error for any other checkpoint."""
    stamp = read_checkpoint(path).get(STAMP_KEY)
    require(
        isinstance(stamp, dict) and "stage" in stamp,
        f"resume_from={path} was not written by a spade-pl training stage (no stage record); allowed: a run "
        f"folder or <run>/checkpoints/<stage>/last.ckpt",
    )
    return stamp


class StageCheckpointing(Callback):
    """Stamps the stage's checkpoints and seeds each training and validation step from where it is."""

    def __init__(self, stamp: dict[str, Any], seed: int):
        self.stamp = stamp
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, index: int) -> None:
        reseed(derive_seed(self.seed, self.stamp["stage"], "train", trainer.current_epoch, index))

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, index: int, dataloader_idx: int = 0
    ) -> None:
        reseed(derive_seed(self.seed, self.stamp["stage"], "val", trainer.current_epoch, index))

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[STAMP_KEY] = self.stamp


class ResumeSource:
    """Where a job resumes from (``resume_from``), checked against the job's training stages up front."""

    def __init__(self, resume_from: str | None, expected: dict[str, dict[str, Any]]):
        """``expected``: the stamp of each training stage this job will run, by stage name."""
        self.folder: Path | None = None
        self.checkpoint: Path | None = None
        self.checkpoint_stage: str | None = None
        if resume_from is None:
            return
        path = Path(resume_from)
        require(path.exists(), f"resume_from={path} does not exist; allowed: a run folder or a stage's last.ckpt")
        require(
            bool(expected),
            f"resume_from={path} given, but this job trains nothing (stage, cached teacher, finetune=none)",
        )
        if path.is_dir():
            require(
                (path / "checkpoints").is_dir(),
                f"resume_from={path} is not a spade-pl run folder (no checkpoints/ inside)",
            )
            self.folder = path
            for stage, stamp in expected.items():  # finished stages too: their choice is reused
                last = path / "checkpoints" / stage / "last.ckpt"
                if last.is_file():
                    self._check(last, stamp)
            return
        found = read_stamp(path)
        require(
            found["stage"] in expected,
            f"resume_from={path} was written by stage {found['stage']!r}; this job trains: {', '.join(expected)}",
        )
        self._check(path, expected[found["stage"]], found)
        self.checkpoint = path
        self.checkpoint_stage = found["stage"]

    @staticmethod
    def _check(path: Path, expected: dict[str, Any], found: dict[str, Any] | None = None) -> None:
        mismatch = stamp_mismatch(found or read_stamp(path), expected)
        if mismatch is not None:
            raise SpadeInputError(f"resume_from: {path} belongs to another configuration: {mismatch}")

    def stage_folder_done(self, stage_dir: Path) -> Path | None:
        """The ``selected.json`` of a finished stage of the resumed folder, else None."""
        done = stage_dir / DONE_FILE
        return done if self.folder is not None and done.is_file() else None

    def checkpoint_for(self, stage: str, stage_dir: Path) -> Path | None:
        """The checkpoint ``stage`` continues from: the given one if it is that stage's, or the folder's last."""
        if self.checkpoint is not None:
            return self.checkpoint if self.checkpoint_stage == stage else None
        last = stage_dir / "last.ckpt"
        return last if self.folder is not None and last.is_file() else None
