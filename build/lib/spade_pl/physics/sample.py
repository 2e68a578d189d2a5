"""The batch protocol every problem's samples implement, so the module, objectives, pruning and benchmark
never look inside a problem's data (MRI slices: :class:`spade_pl.data.mri.slice_transform.MRISample`; super-resolution
images: :class:`spade_pl.data.images.datamodule.SRSample`)."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from spade_pl.physics.base import Physics


class Sample(Protocol):
    """A collated batch: measurements, ground truth, keys, and the problem's view of them.

    A sample is a ``NamedTuple``: the benchmark and the export rebuild one field by field
    (``type(batch)(*fields)``) to move it to a device, repeat a slice or join a volume's slices, and the
    default collate keeps its type."""

    _fields: tuple[str, ...]  # what a NamedTuple has: the fields, in order

    target: Tensor  # ground truth in the space of image(): only supervised training and reports read it
    fname: list[str]  # volume / image name of each item
    slice_num: Tensor  # slice of the volume (0 for single images)

    @property
    def y(self) -> Tensor: ...  # the measurements a network reconstructs from

    def physics(self) -> Physics: ...  # the batch's measurement operator

    def image(self, x: Tensor) -> Tensor: ...  # a network's output -> the real image compared with target

    def baseline(self) -> Tensor: ...  # the classical reconstruction (zero-filled, bicubic), like image()
