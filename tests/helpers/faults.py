"""Test-only callbacks that make real faults happen inside a real run: a disk that fills up, a DEQ whose
fixed-point map turns expansive."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import lightning as L
import torch

import spade_pl.core.atomic_io


class FullFile:
    """A file whose writes fail with ENOSPC, as on a full disk, after what the disk still had room for."""

    def __init__(self, file, room: int = 64):
        self.file, self.room = file, room

    def write(self, data) -> int:
        if len(data) > self.room:
            self.file.write(bytes(data)[: self.room])
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


class FullDiskOS:
    """``os`` as :mod:`spade_pl.core.atomic_io` sees it, except that the temp files of ``name`` open as
    :class:`FullFile`."""

    def __init__(self, name: str):
        self.name = name

    def fdopen(self, fd: int, *args, **kwargs):
        file = os.fdopen(fd, *args, **kwargs)
        path = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        return FullFile(file) if path.startswith(f".{self.name}.") else file

    def __getattr__(self, attribute):
        return getattr(os, attribute)


class FullDisk(L.Callback):
    """From ``epoch`` of training on (``None``: at once), every atomic write of a file named ``name`` runs out of
    space mid-write (inside :func:`spade_pl.core.atomic_io.atomic_write`, the path every checkpoint and result
    takes)."""

    def __init__(self, name: str, epoch: int | None = None):
        self.name, self.epoch = name, epoch
        if epoch is None:
            spade_pl.core.atomic_io.os = FullDiskOS(name)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            spade_pl.core.atomic_io.os = FullDiskOS(self.name)


class ExpansiveStep(L.Callback):
    """At ``epoch``, set the DEQ's step size so large that ``x - gamma A^H(A x - y)`` is expansive: the solver's
    iterates grow without bound (a step size that training drove too far does the same)."""

    def __init__(self, epoch: int, gamma: float = 1e12):
        self.epoch, self.gamma = epoch, gamma

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                pl_module.network.gamma.fill_(self.gamma)


class RankZeroFullDisk(L.Callback):
    """On rank 0 only, every atomic write of a file named ``name`` runs out of space: rank 0 fails where the other
    ranks go on (DDP ranks are separate processes; the launching one is rank 0)."""

    def __init__(self, name: str):
        if os.environ.get("LOCAL_RANK", "0") == "0":
            spade_pl.core.atomic_io.os = FullDiskOS(name)
