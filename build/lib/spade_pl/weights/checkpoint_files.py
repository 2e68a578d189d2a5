"""Checkpoint files: every load uses the safe (``weights_only=True``) loader, every save is atomic and fsync'd."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from spade_pl.core.atomic_io import atomic_torch_save
from spade_pl.core.errors import SpadeInputError, require

#: the class named in a safe loader's refusal ("Unsupported global: GLOBAL argparse.Namespace ...")
REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load`` with ``weights_only=True``: checkpoints hold only tensors and plain containers. A file it
    refuses (pickled Python objects), a truncated file and a non-PyTorch file are each one line."""
    path = Path(path)
    require(path.is_file(), f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = REFUSED_GLOBAL.search(str(err))
        if refused is None:
            raise SpadeInputError(
                f"checkpoint {path} cannot be read safely: it is not a PyTorch file ({err})"
            ) from None
        raise SpadeInputError(
            f"checkpoint {path} cannot be read safely: it holds a pickled {refused.group(1)}, which weights_only=True "
            f"refuses; allowed: tensors and plain containers, e.g. torch.save(model.state_dict(), path)"
        ) from None
    except OSError:
        raise  # the disk's or the folder's state (no permission, I/O error): the disk handler says which
    except (RuntimeError, EOFError, ValueError) as err:  # torch's reader on a truncated or foreign file
        detail = str(err).split(". ")[0]
        raise SpadeInputError(
            f"checkpoint {path} cannot be read safely: it is truncated or not a PyTorch file ({type(err).__name__}: "
            f"{detail})"
        ) from None


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O (ModelCheckpoint, ``save_checkpoint``, resume) through our safe paths.

    Saves go through a temp file, fsync and rename (a kill mid-save leaves the previous checkpoint whole);
    loads, Lightning's resume included, use ``weights_only=True`` whatever the torch version's default.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        atomic_torch_save(path, checkpoint)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path)
