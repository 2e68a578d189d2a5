"""Checkpoint files: every load uses the safe (``weights_only=True``) loader, every save is atomic and fsync'd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from spade_pl.errors import SpadeInputError, require
from spade_pl.io_utils import atomic_write

NETWORK_PREFIX = "network."


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``: checkpoints hold only tensors and plain containers."""
    path = Path(path)
    require(path.is_file(), f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file to the user
        raise SpadeInputError(f"checkpoint {path} cannot be read safely ({type(err).__name__}: {err})") from None


def network_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The network's weights out of a ReconModule checkpoint's ``state_dict``."""
    state = checkpoint.get("state_dict", {})
    return {k[len(NETWORK_PREFIX) :]: v for k, v in state.items() if k.startswith(NETWORK_PREFIX)}


def load_network_weights(network: nn.Module, checkpoint: dict[str, Any], path: str | Path) -> nn.Module:
    """Load the checkpoint's weights; a shape mismatch (e.g. another architecture) is one clear error."""
    try:
        network.load_state_dict(network_state(checkpoint), strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = next((line.strip() for line in first[1:] if line.strip()), first[0])
        raise SpadeInputError(
            f"checkpoint {path} does not match the configured network ({detail}); check network=... / prune.*"
        ) from None
    return network


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O (ModelCheckpoint, ``save_checkpoint``, resume) through our safe paths.

    Saves go through a temp file, fsync and rename (a kill mid-save leaves the previous checkpoint whole);
    loads, Lightning's resume included, use ``weights_only=True`` whatever the torch version's default.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        atomic_write(path, lambda f: torch.save(checkpoint, f))

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path)
