"""``stage=reconstruct`` for fastMRI-format files: each file's slices in order, its reconstruction written as
``fastmri.save_reconstructions`` writes it (a ``reconstruction`` dataset, slices x h x w float32, in the file's own
scale, so it compares with fastMRI's ``reconstruction_rss``); files without a stored mask are fully sampled and
carry their ground truth."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from fastmri.data import SliceDataset
from torch import Tensor

from spade_pl.core.atomic_io import atomic_write_in_memory_first
from spade_pl.data.mri.slice_transform import MRISample
from spade_pl.data.reconstruction import Reconstructions


def stores_mask(path: Path) -> bool:
    """Whether ``path`` is already undersampled (fastMRI's test and challenge files, a scanner's scan)."""
    with h5py.File(path, "r") as hf:
        return "mask" in hf


class MRIReconstructions(Reconstructions):
    """The slices of fastMRI-format files, by file; fully sampled files are scored."""

    def __init__(self, dataset: SliceDataset):
        volumes: dict[str, list[int]] = defaultdict(list)
        paths: dict[str, Path] = {}
        for index, raw in enumerate(dataset.raw_samples):
            volumes[raw.fname.name].append(index)
            paths[raw.fname.name] = raw.fname
        scored = frozenset(name for name, path in paths.items() if not stores_mask(path))
        super().__init__(dataset, volumes, scored)

    def stored(self, batch: MRISample, image: Tensor) -> np.ndarray:
        """The magnitude times the slice's normalisation: the file's own scale."""
        return (image * batch.scale.reshape(-1, 1, 1).to(image)).cpu().numpy()

    def write(self, path: Path, name: str, slices: np.ndarray) -> None:
        def write(file: Any) -> None:
            with h5py.File(file, "w") as hf:
                hf.create_dataset("reconstruction", data=slices.astype(np.float32))

        atomic_write_in_memory_first(path, write)
