"""``stage=reconstruct`` for super-resolution: low-resolution images in (``data.root``: the measurements, no ground
truth), super-resolved images out, each in the format and bit depth of the image it comes from. With
``reconstruct.split``, the split's high-resolution images are measured as ``stage=test`` measures them, and scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from spade_pl.core.atomic_io import atomic_write_in_memory_first
from spade_pl.core.errors import require
from spade_pl.data.images.files import read_image, stored_dtype, write_image
from spade_pl.data.images.sample import SRSample
from spade_pl.data.reconstruction import Reconstructions


class MeasuredImages(Dataset):
    """Images that *are* the measurements ``y`` (already low resolution): one sample each, with the configured
    physics as the operator that made them and an empty target (there is no ground truth)."""

    def __init__(self, files: Sequence[Path], kernel: Tensor, scale: int, channels: int):
        self.files, self.kernel, self.scale, self.channels = list(files), kernel, scale, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> SRSample:
        path = self.files[index]
        lr = torch.from_numpy(read_image(path, self.channels))
        return SRSample(lr, lr.new_zeros(self.channels, 0, 0), self.kernel, self.scale, path.name, 0)


class ImageReconstructions(Reconstructions):
    """One image per "volume", written under its own file name in its source's format and bit depth."""

    def __init__(self, dataset: Dataset, sources: Sequence[Path], scored: bool):
        names = [path.name for path in sources]
        twice = sorted({name for name in names if names.count(name) > 1})
        require(not twice, f"images {', '.join(twice)} appear twice (in different folders); names must be unique")
        for path in sources:
            stored_dtype(path)  # every format checked writable before any work
        self.sources = dict(zip(names, sources, strict=True))
        super().__init__(
            dataset, {name: [i] for i, name in enumerate(names)}, frozenset(names) if scored else frozenset()
        )

    def stored(self, batch: SRSample, image: Tensor) -> np.ndarray:
        return image.float().cpu().numpy()

    def write(self, path: Path, name: str, slices: np.ndarray) -> None:
        def write(file: IO[bytes]) -> None:
            write_image(file, slices[0], like=self.sources[name])

        atomic_write_in_memory_first(path, write)
