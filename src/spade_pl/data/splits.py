"""Splits by volume / image (file), never by slice, and the datamodule plumbing every problem's data shares.

Each split's files come from its own folder (``train_dir``/``val_dir``/``test_dir``), else from sub-folders
``root/{train,val,test}``, else from ``split_file`` (JSON ``{"train": [...], "val": [...], "test": [...]}`` of
file names inside ``root``; keep it outside ``root``), else from an automatic split of root's files by sorted
name with ``split_fractions``. Datasets are built per (split, purpose): "train" (the training loader), "val"
(the validation loader), "eval" (reports), so test-time adaptation (fitting on the test split's measurements)
never shares a dataset with the report, and a problem may serve training patches but whole validation images.
"""

from __future__ import annotations

import copy
import json
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from spade_pl.core.errors import SpadeInputError, require
from spade_pl.data.reconstruction import Reconstructions
from spade_pl.data.sampling import EpochSampler, SeededSamples
from spade_pl.physics.base import Physics
from spade_pl.physics.sample import Sample

SPLITS = ("train", "val", "test")


class Splits:
    """Where the files of each split are (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        split_dirs: dict[str, str | None],
        split_file: str | None,
        fractions: Sequence[float],
        suffixes: tuple[str, ...],
        kind: str,
    ):
        require(
            len(fractions) == 3 and all(f >= 0 for f in fractions) and sum(fractions) > 0,
            f"data.split_fractions={list(fractions)} is invalid; allowed: three non-negative fractions "
            f"(train, val, test) with a positive sum",
        )
        self.root = root
        self.split_dirs = split_dirs
        self.split_file = split_file
        self.fractions = [float(f) / sum(fractions) for f in fractions]
        self.suffixes = suffixes
        self.kind = kind  # how messages name the files, e.g. "HDF5 (.h5)"

    def source(self, split: str) -> tuple[Path, set[str] | None]:
        """The folder to read for ``split`` and, unless the split has its own folder, the names of its files."""
        if self.split_dirs.get(split):
            return Path(self.split_dirs[split]), None
        if (self.root / split).is_dir():
            return self.root / split, None
        require(self.root.is_dir(), f"data folder {self.root} does not exist (data.root)")
        if self.split_file is not None:
            path = Path(self.split_file)
            require(path.is_file(), f"data.split_file {path} does not exist")
            try:
                names = set(json.loads(path.read_text())[split])
            except (KeyError, json.JSONDecodeError) as err:
                raise SpadeInputError(
                    f"data.split_file {path} is malformed ({err}); expected JSON with lists 'train', 'val', 'test'"
                ) from None
            return self.root, names
        return self.root, set(self.automatic()[split])

    def automatic(self) -> dict[str, list[str]]:
        """Deterministic split of root's files by sorted name into train/val/test fractions."""
        names = sorted(p.name for p in self.root.iterdir() if p.suffix.lower() in self.suffixes)
        require(len(names) > 0, f"data folder {self.root} has no {self.kind} files (data.root)")
        require(len(names) >= 3, f"data folder {self.root} has {len(names)} {self.kind} files; a split needs >= 3")
        n_val = max(1, round(self.fractions[1] * len(names)))
        n_test = max(1, round(self.fractions[2] * len(names)))
        n_train = len(names) - n_val - n_test
        return {"train": names[:n_train], "val": names[n_train : n_train + n_val], "test": names[n_train + n_val :]}

    def files(self, split: str, strict: bool = True) -> tuple[Path, list[Path], set[str] | None]:
        """(folder, the split's files, names filter or None); ``strict``: the folder may hold nothing else."""
        folder, names = self.source(split)
        require(folder.is_dir(), f"data folder {folder} for split '{split}' does not exist (data.root={self.root})")
        entries = sorted(p for p in folder.iterdir() if p.is_file())
        matching = [p for p in entries if p.suffix.lower() in self.suffixes]
        require(len(matching) > 0, f"data folder {folder} for split '{split}' has no {self.kind} files")
        others = [p.name for p in entries if p not in matching]
        require(not (strict and others), f"data folder {folder} holds other files {others[:3]}; keep only {self.kind}")
        chosen = [p for p in matching if names is None or p.name in names]
        return folder, chosen, names


class SplitDataModule(L.LightningDataModule):
    """Loaders over per-split datasets (built once, cached by (split, purpose)); subclasses build a dataset."""

    #: the physics its samples carry (``Sample.physics()``): what a network is checked against before any work
    physics_type: type[Physics] = Physics

    def __init__(self, batch_size: int, num_workers: int):
        super().__init__()
        require(int(batch_size) >= 1, f"data.batch_size={batch_size} is invalid; allowed: integers >= 1")
        require(int(num_workers) >= 0, f"data.num_workers={num_workers} is invalid; allowed: integers >= 0")
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.datasets: dict[tuple[str, str], Dataset] = {}
        self.fit_splits = ("train", "val")  # what train_dataloader / val_dataloader read
        self.eval_split = "test"  # what test_dataloader reads
        #: what the job's network needs of every file (``MBDLNetwork.needs_for``), and who, for the message
        self.needs: frozenset[str] = frozenset()
        self.needed_by = ""

    def require(self, needs: frozenset[str], needed_by: str) -> None:
        """The network ``needed_by`` needs ``needs`` of the data's physics: files that lack any of it are refused
        in one line when the datasets are built (before any training). Capabilities a file cannot lack are
        the physics type's, checked before the data is built."""
        self.needs, self.needed_by = frozenset(needs), needed_by

    @abstractmethod
    def build_dataset(self, split: str, purpose: str) -> Dataset:
        """The dataset of ``split`` for ``purpose``: "train", "val" (fitting) or "eval" (reports)."""

    def synthetic_batch(self, size: int, coils: int) -> Sample:
        """One realistic ``size`` x ``size`` input with ``coils`` channels where the modality has them (the
        benchmark's fixed-size input, ``benchmark.size``)."""
        raise SpadeInputError(
            f"benchmark.size={size} needs data that can make a synthetic input; {type(self).__name__} cannot: "
            f"set benchmark.size=null (the first test slice)"
        )

    def reconstruction_dataset(self, split: str | None) -> Reconstructions:
        """What ``stage=reconstruct`` reconstructs (``split=None``: every file directly in ``root``) and how it
        writes it back; a problem's datamodule provides it (MRI: fastMRI files, super-resolution: images)."""
        raise SpadeInputError(
            f"stage=reconstruct needs the datamodule's reconstruction_dataset; {type(self).__name__} has none: "
            f"score it with stage=test"
        )

    def first_eval_batch(self) -> Sample:
        """The evaluated split's first sample as a batch of one (set up first), for checks before any work."""
        return default_collate([self._dataset(self.eval_split, "eval")[0]])

    def scored(self, split: str, purpose: str) -> bool:
        """Whether the dataset of ``split`` for ``purpose`` holds the measurements the reports score: the
        evaluated split, and test-time adaptation on it (a view fitting on the evaluated split); never the
        datasets that train or select a model."""
        return split == self.eval_split and (purpose == "eval" or self.fit_splits[0] == split)

    def evaluation_conditions(self) -> dict[str, Any]:
        """How the scored measurements differ from the training ones (a transfer evaluation), for the
        reports; empty when they are measured alike."""
        return {}

    def fitting_on(self, split: str) -> SplitDataModule:
        """A view that trains and validates on ``split`` (test-time adaptation: ``"test"``), same datasets cache."""
        require(split in SPLITS, f"split {split!r} is unknown; allowed: {', '.join(SPLITS)}")
        view = copy.copy(self)
        view.fit_splits = (split, split)
        return view

    def evaluating_on(self, split: str) -> None:
        """Score reports on ``split``: ``"test"`` for final numbers, ``"val"`` while choosing a recipe."""
        require(split in ("val", "test"), f"eval_split={split!r} is invalid; allowed: val, test")
        self.eval_split = split

    def _dataset(self, split: str, purpose: str = "eval") -> Dataset:
        if (split, purpose) not in self.datasets:
            self.datasets[(split, purpose)] = self.build_dataset(split, purpose)
        return self.datasets[(split, purpose)]

    def setup(self, stage: str | None = None) -> None:
        train, val = self.fit_splits
        needed: dict[str, Sequence[tuple[str, str]]] = {
            "fit": ((train, "train"), (val, "val")),
            "validate": ((val, "val"),),
            "test": ((self.eval_split, "eval"),),
        }
        for split, purpose in needed.get(stage or "", ((train, "train"), (val, "val"), (self.eval_split, "eval"))):
            self._dataset(split, purpose)

    def _loader(self, split: str, purpose: str) -> DataLoader:
        training = purpose == "train"
        dataset = self._dataset(split, purpose)
        return DataLoader(
            SeededSamples(dataset) if training else dataset,
            batch_size=self.batch_size if training else 1,
            sampler=EpochSampler(len(dataset), self.current_epoch) if training else self.evaluation_sampler(dataset),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def evaluation_sampler(self, dataset: Dataset) -> Sampler | None:
        """The sampler of validation and test loaders: None (Lightning's default: in order, and under DDP a
        ``DistributedSampler`` that deals the items out to the ranks, which keeps every image whole). Data whose
        volumes span several items returns one that keeps each volume on one rank, in order: per-volume scores are
        computed as a volume's slices stream in."""
        return None

    def current_epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.current_epoch if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.fit_splits[0], "train")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.fit_splits[1], "val")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.eval_split, "eval")
