"""A test-only callback that SIGKILLs its own process mid-epoch, as a cluster's pre-emption would."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L


class KillAt(L.Callback):
    """Kill the process at ``batch`` of ``epoch`` of the training stage ``stage`` (no cleanup, no flush)."""

    def __init__(self, stage: str, epoch: int, batch: int = 1):
        self.stage, self.epoch, self.batch = stage, epoch, batch

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        stage = Path(trainer.checkpoint_callback.dirpath).name
        if (stage, trainer.current_epoch, batch_idx) == (self.stage, self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGKILL)
