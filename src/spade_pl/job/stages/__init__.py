"""The stages a job can run (``stage=<name>``): each a function of the :class:`~spade_pl.job.context.JobContext`.

``spade``      the whole job: dense teacher (cached) -> prune -> fine-tune -> test all -> benchmark -> report
``pretrain``   train the dense network
``test``       evaluate ``ckpt_path`` (dense or pruned) on the held-out test split
``prune``      prune the dense ``ckpt_path`` one-shot, write the pruned checkpoint, report the drop
``benchmark``  time dense vs pruned (``ckpt_path`` or random weights) in one process
``export``     write ``ckpt_path`` (dense or pruned) as weights + pruning history, in its library's own format
               where it has one (fastMRI VarNet), and as a torch.export program (``export.formats``)
``reconstruct`` reconstruct every file of ``data.root`` with ``ckpt_path`` (ground truth or not) into HDF5 files

``stage=spade ckpt_path=dense.ckpt`` prunes and fine-tunes a dense model you trained elsewhere;
``resume_from=<run folder or a stage's last.ckpt>`` continues an interrupted job exactly
(:mod:`spade_pl.training.resume`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spade_pl.job.context import JobContext
from spade_pl.job.stages.export import stage_export
from spade_pl.job.stages.pretrain import stage_pretrain
from spade_pl.job.stages.prune import stage_benchmark, stage_prune
from spade_pl.job.stages.reconstruct import stage_reconstruct
from spade_pl.job.stages.spade import run_spade
from spade_pl.job.stages.test import stage_test


@dataclass(frozen=True)
class Stage:
    """What ``stage=<name>`` runs, and whether it needs the data's train/val/test splits (set up and checked
    before it starts); a stage that reads files as they are (reconstruction) does not."""

    run: Callable[[JobContext], dict[str, Any]]
    splits: bool = True


#: ``stage=<name>`` -> its stage; adding a stage is one function of a :class:`JobContext` and one entry here
STAGES: dict[str, Stage] = {
    "spade": Stage(run_spade),
    "pretrain": Stage(stage_pretrain),
    "test": Stage(stage_test),
    "prune": Stage(stage_prune),
    "benchmark": Stage(stage_benchmark),
    "export": Stage(stage_export),
    "reconstruct": Stage(stage_reconstruct, splits=False),
}
