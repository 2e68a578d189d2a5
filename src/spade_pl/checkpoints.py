"""Loading network weights from Lightning checkpoints with the safe (``weights_only=True``) loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from spade_pl.errors import SpadeInputError, require

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
