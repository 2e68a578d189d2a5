"""The configured network, fresh or with a checkpoint's weights: what every stage builds its networks with."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spade_pl.core.errors import require
from spade_pl.core.instantiate import build
from spade_pl.models.base import MBDLNetwork
from spade_pl.pruning.counting import count_params
from spade_pl.pruning.prune import replay_structure
from spade_pl.weights.checkpoint_files import read_checkpoint
from spade_pl.weights.load import PRUNING_KEY, check_shapes, find_network_weights

log = logging.getLogger(__name__)


class NetworkFactory:
    """Builds ``network.model``: with random weights (:meth:`new`), or with the weights and pruned structure of a
    checkpoint of any format :mod:`spade_pl.weights.load` reads (:meth:`load`), always with the safe loader.
    ``ckpt_prefix`` names where the network's weights sit in a checkpoint whose layout cannot be told."""

    def __init__(self, model: DictConfig, ckpt_prefix: str | None = None):
        self.model, self.ckpt_prefix = model, ckpt_prefix

    def new(self) -> MBDLNetwork:
        return build(self.model)

    def load(self, ckpt_path: str | Path) -> tuple[MBDLNetwork, dict[str, Any] | None]:
        """The configured network with the weights of ``ckpt_path`` and its pruned structure (None if dense); one
        line says what was loaded."""
        path, network = str(ckpt_path), self.new()
        started = time.perf_counter()
        configured = OmegaConf.to_container(self.model, resolve=True)
        checkpoint = read_checkpoint(path)
        stored = checkpoint.get(PRUNING_KEY) if isinstance(checkpoint, Mapping) else None
        if stored:  # first: the weights are then found by the names of the pruned network (its kept stages)
            replay_structure(network, stored)
        weights = find_network_weights(checkpoint, path, network, configured, self.ckpt_prefix)
        network.load_state_dict(check_shapes(weights, path, network, configured), strict=True)
        arguments = ", ".join(f"{k}={v}" for k, v in configured.items() if k != "_target_")
        log.info(
            "loaded %s: %s; %s(%s), %s, %s parameters (%.1f s)",
            path,
            weights.source,
            type(network).__name__,
            arguments,
            "pruned" if weights.structure else "dense",
            f"{count_params(network):,}",
            time.perf_counter() - started,
        )
        return network, weights.structure or None

    def dense(self, ckpt_path: str | Path) -> MBDLNetwork:
        """The network of a dense checkpoint (a pruned one is an input error: this stage prunes it itself)."""
        network, structure = self.load(ckpt_path)
        require(structure is None, f"checkpoint {ckpt_path} is already pruned; this stage needs the dense model")
        return network

    def pruned_like(self, structure: dict[str, Any]) -> MBDLNetwork:
        """A fresh network with ``structure``'s pruned widths (random weights, from the current random state)."""
        return replay_structure(self.new(), structure)
