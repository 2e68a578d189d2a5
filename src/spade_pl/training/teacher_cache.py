"""The dense-teacher cache: one dense model per config, trained once and shared by every job that needs it.

Parallel sweep jobs (joblib, submitit) serialise on a file lock: the first trains, the others wait and reuse.
Under DDP every rank runs this code (Lightning re-runs the command per rank) but only rank 0 may take the lock:
the other ranks must join rank 0's training, not wait for it. Rank 0 therefore leaves a marker naming its run
while it trains; another rank of the same run trains along when it sees that marker, reuses the cache when the
cached file exists, and otherwise waits (rank 0 is still waiting for another job's teacher).
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spade_pl.core.atomic_io import atomic_write, atomic_write_text
from spade_pl.core.errors import RunFailure, SpadeInputError

log = logging.getLogger(__name__)
#: how long a rank > 0 waits for a sign of life from rank 0 (which shows one every poll while it waits for another
#: job's teacher) before it gives up in one line instead of hanging until the cluster kills the job
RANK_ZERO_SILENCE_S = 300.0
# what shapes the dense model: the network section (its architecture and pre-training recipe; fine-tuning recipes
# live in conf/recipe), the data, the problem, the pre-training config, the trainer and the seed ...
SHAPING_SECTIONS = ("network", "data", "problem", "pretrain", "trainer", "seed")
# ... except where a run loads and writes, how its scored split is measured and how long the pruned network
# fine-tunes, which change nothing in the dense model
RUN_ENVIRONMENT = {
    "data": ("num_workers", "eval_mask"),
    "trainer": ("default_root_dir",),
    "network": ("finetune_epochs",),
}


#: the module path each class had when cached teachers were first keyed: keys name those paths, so that moving a
#: class inside the package never invalidates a teacher a user has cached (hours of training)
KEYED_TARGETS = {
    "spade_pl.objectives.Supervised": "spade_pl.finetune.Supervised",
    "spade_pl.objectives.Distill": "spade_pl.finetune.Distill",
    "spade_pl.objectives.SelfSupervised": "spade_pl.finetune.SelfSupervised",
    "spade_pl.objectives.Sum": "spade_pl.finetune.Sum",
    "spade_pl.objectives.EquivariantImaging": "spade_pl.finetune.EquivariantImaging",
    "spade_pl.data.mri.datamodule.FastMRIDataModule": "spade_pl.data.datamodule.FastMRIDataModule",
    "spade_pl.data.mri.embedded.EmbeddedMRIBuilder": "spade_pl.data.embedded.EmbeddedMRIBuilder",
    "spade_pl.data.images.datamodule.ImageDataModule": "spade_pl.data.images.ImageDataModule",
    "spade_pl.data.images.datamodule.EmbeddedImagesBuilder": "spade_pl.data.images.EmbeddedImagesBuilder",
}


def _keyed(node: Any) -> Any:
    """``node`` with every ``_target_`` named as :data:`KEYED_TARGETS` names it."""
    if isinstance(node, dict):
        return {k: KEYED_TARGETS.get(v, v) if k == "_target_" else _keyed(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_keyed(v) for v in node]
    return node


def teacher_key(cfg: DictConfig) -> str:
    """A short hash of the sections of ``cfg`` that shape the dense model (:data:`SHAPING_SECTIONS`), whole: a
    setting added to one of them enters the key, and nothing of the fine-tuning (``finetune``, ``recipe``,
    ``prune``) can."""
    shaping = {
        k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig) else cfg[k]
        for k in SHAPING_SECTIONS
    }
    for section, keys in RUN_ENVIRONMENT.items():
        for key in keys:
            shaping[section].pop(key, None)
    if cfg.allow_tf32:  # TF32 arithmetic trains a (slightly) different model; off adds nothing to the key
        shaping["allow_tf32"] = True
    blob = json.dumps(_keyed(shaping), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def copy_durably(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically and fsync'd (a crash leaves the old file or the whole new one)."""
    with open(source, "rb") as src:
        atomic_write(target, lambda dst: shutil.copyfileobj(src, dst))


class TeacherCache:
    """``<cache_dir>/teachers/<key>/dense.ckpt`` (+ the ``config.yaml`` that made it)."""

    def __init__(self, cache_dir: str | Path, cfg: DictConfig):
        self.cfg = cfg
        self.folder = Path(cache_dir) / "teachers" / teacher_key(cfg)
        self.path = self.folder / "dense.ckpt"

    def _marker(self, run_id: str) -> Path:
        return self.folder / f".training-{hashlib.sha1(run_id.encode()).hexdigest()[:12]}"

    def _heartbeat(self, run_id: str) -> Path:
        """Rank 0 touches it while it looks for the teacher or waits for another job's: the other ranks' sign
        that it is alive."""
        return self.folder / f".alive-{hashlib.sha1(run_id.encode()).hexdigest()[:12]}"

    def get_or_train(
        self,
        train: Callable[[], Path],
        allowed: bool,
        run_id: str,
        rank: int = 0,
        poll_s: float = 0.5,
        silence_s: float = RANK_ZERO_SILENCE_S,
    ) -> Path:
        """The cached teacher; if there is none, ``train()`` one (when ``allowed``) and cache it.

        ``run_id`` is shared by the ranks of one run (its output folder); ``rank`` is this process's rank. A rank
        > 0 gives up, in one line, when rank 0 shows no sign of life for ``silence_s`` seconds.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        if rank != 0:
            return self._follow_rank_zero(train, run_id, rank, poll_s, silence_s)
        self._marker(run_id).unlink(missing_ok=True)  # a killed earlier attempt of this run may have left one
        heartbeat = self._heartbeat(run_id)
        heartbeat.touch()
        with open(self.folder / ".lock", "w") as lock:
            while True:  # parallel jobs wait here while the first trains the shared teacher, showing they live
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    heartbeat.touch()
                    time.sleep(poll_s)
            if self.path.is_file():
                log.info("[teacher] reusing the cached dense model %s", self.path)
                return self.path
            if not allowed:
                raise SpadeInputError(
                    f"no dense teacher for this config at {self.path} and pretrain.train_if_missing=false; "
                    f"pass ckpt_path=/path/to/dense.ckpt or allow training"
                )
            log.info("[teacher] no cached dense model for this config: training one (cached for later runs)")
            marker = self._marker(run_id)
            marker.write_text(run_id)
            try:
                selected = train()
                copy_durably(selected, self.path)
                atomic_write_text(self.folder / "config.yaml", OmegaConf.to_yaml(self.cfg, resolve=False))
            finally:
                marker.unlink(missing_ok=True)
            return self.path

    def _follow_rank_zero(
        self, train: Callable[[], Path], run_id: str, rank: int, poll_s: float, silence_s: float
    ) -> Path:
        """A rank > 0: reuse what rank 0 reuses, train along when rank 0 trains; give up when rank 0 has shown
        no sign of life (its heartbeat) for ``silence_s`` since this rank began to wait."""
        marker, heartbeat, started = self._marker(run_id), self._heartbeat(run_id), time.time()
        for attempt in itertools.count():
            if self.path.is_file():
                return self.path
            if marker.is_file():
                log.info("[teacher] rank 0 trains the dense teacher: joining it")
                return train()
            last_sign = max(started, heartbeat.stat().st_mtime if heartbeat.is_file() else started)
            if time.time() - last_sign > silence_s:
                raise RunFailure(
                    f"rank {rank} waited for rank 0 to find or train the dense teacher in {self.folder}, and rank 0 "
                    f"has shown no sign of life for {silence_s:g} s: it has probably failed (see its log)"
                )
            if attempt % int(60 / poll_s) == 0:
                log.info("[teacher] waiting for rank 0 to find or start the dense teacher")
            time.sleep(poll_s)
