"""Quick subsets of a data set, as fastMRI's ``SliceDataset`` draws them, but seeded and keeping the volumes that
are scored whole: ``volume_sample_rate`` keeps a fraction of each split's volumes, ``sample_rate`` a fraction of
the training slices."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spade_pl.core.errors import require


@dataclass(frozen=True)
class Subset:
    """``sample_rate`` and ``volume_sample_rate`` in (0, 1], one below 1 at a time (fastMRI's rule), drawn from
    ``seed``: the same subset in every run and on every rank."""

    sample_rate: float = 1.0
    volume_sample_rate: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("sample_rate", "volume_sample_rate"):
            value = getattr(self, key)
            require(
                isinstance(value, int | float) and 0 < value <= 1,
                f"data.{key}={value!r} is invalid; allowed: 0 < x <= 1",
            )
        require(
            self.sample_rate == 1 or self.volume_sample_rate == 1,
            f"data.sample_rate={self.sample_rate} and data.volume_sample_rate={self.volume_sample_rate}: allowed: one "
            f"of them below 1 at a time",
        )

    def volumes(self, files: list[Path], split: str) -> list[Path]:
        """``volume_sample_rate`` of ``files`` (at least one), the same draw for a split every time, in file order."""
        if self.volume_sample_rate == 1:
            return files
        keep = max(1, round(len(files) * self.volume_sample_rate))
        chosen = set(random.Random(f"{self.seed}-{split}").sample(sorted(files), keep))
        return [path for path in files if path in chosen]

    def slice_filter(self, names: set[str], sliced: bool) -> Callable[[Any], bool]:
        """A ``raw_sample_filter`` for fastMRI's ``SliceDataset``: the slices of ``names``' volumes, and, where
        ``sliced`` (training), each slice kept with probability ``sample_rate`` by a draw seeded from its volume
        and index (stable across runs, ranks and resumes)."""

        def kept(raw: Any) -> bool:
            if raw.fname.name not in names:
                return False
            if not sliced or self.sample_rate == 1:
                return True
            return random.Random(f"{self.seed}-{raw.fname.name}-{raw.slice_ind}").random() < self.sample_rate

        return kept
