"""What ``stage=reconstruct`` reads and writes, per problem: the items in volume order, which volumes carry their
ground truth, and how a reconstruction goes back to the user's own file format and scale.

The stage itself is generic (load, run the network volume by volume, score what has ground truth, write, skip
what was written): a problem's datamodule hands it a :class:`Reconstructions` from ``reconstruction_dataset``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from spade_pl.core.errors import require
from spade_pl.physics.sample import Sample


class Reconstructions(ABC):
    """The items to reconstruct and where they go.

    ``volumes`` maps each output file name to its items' indices in ``dataset``, slices in order (one volume in
    memory at a time); ``scored`` names the volumes whose ground truth the items carry (they get metrics).
    """

    def __init__(self, dataset: Dataset, volumes: Mapping[str, list[int]], scored: frozenset[str]):
        require(len(volumes) > 0, "there is nothing to reconstruct: the data holds no volume (data.root)")
        self.dataset = dataset
        self.volumes = dict(volumes)
        self.scored = scored

    @abstractmethod
    def stored(self, batch: Sample, image: Tensor) -> np.ndarray:
        """A batch's reconstructed images (``batch.image`` of the network's output) in the output's own scale."""

    @abstractmethod
    def write(self, path: Path, name: str, slices: np.ndarray) -> None:
        """Write the volume ``name``'s reconstruction (``stored`` outputs, joined in slice order) to ``path``,
        atomically: a file that exists is finished."""
