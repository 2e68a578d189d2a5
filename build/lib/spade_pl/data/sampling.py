"""Training order and per-sample randomness as functions of (seed, epoch, position), for exact resume.

Lightning creates (and prefetches from) the training iterator at different moments in a fresh and in a resumed
run, so reseeding global generators at an epoch hook cannot make the two draw alike. Here the sampler reads the
epoch from the trainer when iteration starts, orders the samples by a generator seeded from (seed, epoch), and
hands each sample its own seed; the dataset wrapper seeds the global generators with it before loading the
sample, so its random mask, patch, flip or noise is the same whichever process or worker loads it, and when.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset, Sampler

from spade_pl.core.seeding import derive_seed, reseed


def global_seed() -> int:
    """The run's seed as ``lightning.seed_everything`` published it (Lightning's samplers read the same)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class SampleKey(NamedTuple):
    index: int
    seed: int


class EpochSampler(Sampler[SampleKey]):
    """A shuffled pass over ``size`` samples; the order and each sample's seed depend on the seed and epoch only."""

    def __init__(self, size: int, epoch: Callable[[], int]):
        self.size = size
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[SampleKey]:
        seed, epoch = global_seed(), self.epoch()
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(derive_seed(seed, epoch)))
        for position, index in enumerate(order.tolist()):
            yield SampleKey(index, derive_seed(seed, epoch, position))


class SeededSamples(Dataset):
    """``dataset[key.index]`` loaded right after seeding the global generators with ``key.seed``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey) -> Any:
        reseed(key.seed)
        return self.dataset[key.index]
