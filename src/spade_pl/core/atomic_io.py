"""Atomic, durable file writes: a crash mid-write never leaves a truncated result or checkpoint behind, and a
write that returned survives a power loss (file and directory entry fsync'd)."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from spade_pl.core.errors import SpadeInputError


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write through ``write(fileobj)`` into a temp file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w+b") as f:  # h5py needs to read back what it writes
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:  # a failed write() names no file: name the target
            err.filename = str(path)
        raise
    return path


def atomic_write_in_memory_first(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """:func:`atomic_write`, serialised through ``write`` into memory first: writers that wrap a failed write (a full
    disk) in an unrelated error (torch's zip writer: "unexpected pos ...", h5py: "File close failed") would hide
    it, while a plain write of the bytes raises the ``OSError`` itself (ENOSPC), which the CLI reports in one
    line."""
    buffer = io.BytesIO()
    write(buffer)
    return atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save(obj)`` through :func:`atomic_write_in_memory_first`."""
    import torch

    return atomic_write_in_memory_first(path, lambda f: torch.save(obj, f))


def fsync_dir(folder: Path) -> None:
    """Persist a folder's entries (a rename is durable only once its directory is synced)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def check_writable(folder: Path) -> None:
    """Fail up front, in one line, when results could not be written (read-only, missing permission, full)."""
    probe = folder / ".write-check"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(probe, "ok")
        probe.unlink()
    except OSError as err:
        raise SpadeInputError(
            f"output folder {folder} is not writable ({err.strerror}); allowed: a writable folder "
            f"(hydra.run.dir=... or paths.log_dir=...)"
        ) from None


def folder_built_once(root: Path, fill: Callable[[Path], None], done: str = "manifest.json") -> Path:
    """``root``, filled by ``fill(staging)`` in a temporary sibling folder and renamed into place whole (``fill``
    writes ``done`` last): parallel jobs never see half a folder, the first to finish wins, and a failed fill
    leaves nothing behind."""
    if (root / done).exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
    try:
        fill(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        staging.rename(root)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(staging, ignore_errors=True)
    return root
