"""What the benchmark feeds a network: one slice repeated (latency or batched throughput), or whole volumes."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

from spade_pl.physics.sample import Sample


def repeat_first_slice(batch: Sample, slices: int) -> Sample:
    """A batch of ``slices`` copies of ``batch``'s first slice (what one forward of the benchmark processes); a
    field that is one value for the whole batch (an uncollated number) stays as it is."""

    def repeated(field: Any) -> Any:
        if isinstance(field, Tensor) and field.dim():
            return field[:1].repeat(slices, *[1] * (field.dim() - 1))
        return [field[0]] * slices if isinstance(field, list | tuple) else field

    return type(batch)(*(repeated(field) for field in batch))


def single_slices(volume: Sample) -> list[Sample]:
    """Each slice of ``volume`` (a batch of its slices) as a batch of one, in order."""

    def item(field: Any, k: int) -> Any:
        if isinstance(field, Tensor) and field.dim():
            return field[k : k + 1]
        return [field[k]] if isinstance(field, list | tuple) else field

    return [type(volume)(*(item(field, k) for field in volume)) for k in range(volume.y.shape[0])]


def whole_volumes(batches: Iterable[Sample]) -> Iterator[Sample]:
    """Each volume of ``batches`` (an evaluation loader, in volume order) as one batch of all its slices, one
    volume in memory at a time."""
    parts: list[Sample] = []
    for batch in itertools.chain(batches, [None]):
        if parts and (batch is None or batch.fname[0] != parts[0].fname[0]):
            yield type(parts[0])(*(joined(field) for field in zip(*parts, strict=True)))
            parts = []
        if batch is not None:
            parts.append(batch)


def joined(field: tuple[Any, ...]) -> Any:
    """One field of several batches as one: tensors and lists concatenated, a single value kept."""
    if isinstance(field[0], Tensor):
        return torch.cat(field)
    return [v for part in field for v in part] if isinstance(field[0], list | tuple) else field[0]
