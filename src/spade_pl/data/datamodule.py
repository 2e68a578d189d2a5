"""LightningDataModule over fastMRI-format multi-coil HDF5 folders (real fastMRI data or the embedded default)."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

import h5py
import lightning as L
from fastmri.data import SliceDataset
from torch.utils.data import DataLoader

from spade_pl.data.embedded import EmbeddedMRIBuilder
from spade_pl.data.fastmri_h5 import SENS_MAPS_KEY, check_multicoil_file
from spade_pl.data.transform import MRISliceTransform
from spade_pl.errors import SpadeInputError, require
from spade_pl.espirit import espirit_cache_dir, espirit_command
from spade_pl.physics.masks import build_mask_func

SPLITS = ("train", "val", "test")


def maps_source(path: Path) -> Path | None:
    """The file holding ``path``'s coil maps: the file itself (key ``sens_maps``), its ESPIRiT cache, or none."""
    with h5py.File(path, "r") as hf:
        if SENS_MAPS_KEY in hf:
            return path
    cached = espirit_cache_dir(path.parent) / path.name
    return cached if cached.is_file() else None


class MultiCoilSliceDataset(SliceDataset):
    """fastmri's SliceDataset that also hands the transform the slice's coil maps, when there are any."""

    def __getitem__(self, i: int):
        fname, dataslice, metadata = self.raw_samples[i]
        with h5py.File(fname, "r") as hf:
            kspace = hf["kspace"][dataslice]
            attrs = {**hf.attrs, **metadata}
        source = maps_source(fname)
        if source is not None:
            with h5py.File(source, "r") as hf:
                attrs[SENS_MAPS_KEY] = {dataslice: hf[SENS_MAPS_KEY][dataslice]}
        return self.transform(kspace, None, None, attrs, fname.name, dataslice)


class FastMRIDataModule(L.LightningDataModule):
    """Train/val/test splits by volume (file), never by slice.

    Splits come from ``train_dir``/``val_dir``/``test_dir`` (e.g. fastMRI's ``multicoil_train``), else from
    sub-folders ``root/{train,val,test}``, else from ``split_file``: a JSON ``{"train": [...], "val": [...],
    "test": [...]}`` of file names inside ``root`` (keep the split file outside ``root``: fastmri's
    SliceDataset opens every file in its folder), else from an automatic split of root's files by name
    with ``split_fractions``. Training masks are random per slice; validation and
    test masks are a fixed function of the file name (fastMRI's convention).
    """

    def __init__(
        self,
        root: str | None,
        mask: dict,
        batch_size: int = 1,
        num_workers: int = 0,
        train_dir: str | None = None,
        val_dir: str | None = None,
        test_dir: str | None = None,
        split_file: str | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        builder: EmbeddedMRIBuilder | None = None,
        require_maps: str | None = None,
    ):
        super().__init__()
        require(int(batch_size) >= 1, f"data.batch_size={batch_size} is invalid; allowed: integers >= 1")
        require(
            root is not None or builder is not None, "data.root is not set; point it at a folder of fastMRI .h5 files"
        )
        self.root = Path(root) if root is not None else builder.root
        self.mask_cfg = dict(mask)
        build_mask_func(**self.mask_cfg)  # validate early, before any work
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.split_dirs = {"train": train_dir, "val": val_dir, "test": test_dir}
        self.split_file = split_file
        require(
            len(split_fractions) == 3 and all(f >= 0 for f in split_fractions) and sum(split_fractions) > 0,
            f"data.split_fractions={list(split_fractions)} is invalid; allowed: three non-negative fractions "
            f"(train, val, test) with a positive sum",
        )
        self.split_fractions = [float(f) / sum(split_fractions) for f in split_fractions]
        self.builder = builder
        self.require_maps = require_maps  # name of a network that needs coil maps with the data, if any
        # (split, purpose) -> dataset; "fit" datasets feed training/validation, "eval" ones the report, so that
        # test-time adaptation (fitting on the test split's measurements) never shares a dataset with the report
        self.datasets: dict[tuple[str, str], MultiCoilSliceDataset] = {}
        self.fit_splits = ("train", "val")  # what train_dataloader / val_dataloader read
        self.eval_split = "test"  # what test_dataloader reads

    def fitting_on(self, split: str) -> FastMRIDataModule:
        """A view that trains and validates on ``split`` (test-time adaptation: ``"test"``), same datasets cache."""
        require(split in SPLITS, f"split {split!r} is unknown; allowed: {', '.join(SPLITS)}")
        view = copy.copy(self)
        view.fit_splits = (split, split)
        return view

    def evaluating_on(self, split: str) -> None:
        """Score reports on ``split``: ``"test"`` for final numbers, ``"val"`` while choosing a recipe."""
        require(split in ("val", "test"), f"eval_split={split!r} is invalid; allowed: val, test")
        self.eval_split = split

    def prepare_data(self) -> None:
        if self.builder is not None:
            self.builder()

    def _split_source(self, split: str) -> tuple[Path, set[str] | None]:
        """The folder to read for ``split`` and, unless the split has its own folder, the names of its volumes."""
        if self.split_dirs[split]:
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
        return self.root, set(self._auto_split()[split])

    def _auto_split(self) -> dict[str, list[str]]:
        """Deterministic split of root's volumes (files) by sorted name into train/val/test fractions."""
        names = sorted(p.name for p in self.root.iterdir() if p.suffix in (".h5", ".hdf5"))
        require(len(names) > 0, f"data folder {self.root} has no HDF5 (.h5) files (data.root)")
        require(len(names) >= 3, f"data folder {self.root} has {len(names)} HDF5 files; an automatic split needs >= 3")
        n_val = max(1, round(self.split_fractions[1] * len(names)))
        n_test = max(1, round(self.split_fractions[2] * len(names)))
        n_train = len(names) - n_val - n_test
        return {"train": names[:n_train], "val": names[n_train : n_train + n_val], "test": names[n_train + n_val :]}

    def _dataset(self, split: str, purpose: str = "eval") -> MultiCoilSliceDataset:
        if (split, purpose) in self.datasets:
            return self.datasets[(split, purpose)]
        folder, names = self._split_source(split)
        require(folder.is_dir(), f"data folder {folder} for split '{split}' does not exist (data.root={self.root})")
        files = sorted(p for p in folder.iterdir() if p.is_file())
        h5_files = [p for p in files if p.suffix in (".h5", ".hdf5")]
        require(len(h5_files) > 0, f"data folder {folder} for split '{split}' has no HDF5 (.h5) files")
        others = [p.name for p in files if p not in h5_files]
        require(not others, f"data folder {folder} holds non-HDF5 files {others[:3]}; keep only fastMRI .h5 files")
        for path in h5_files:
            if names is None or path.name in names:
                check_multicoil_file(path)
                if self.require_maps and maps_source(path) is None:
                    raise SpadeInputError(
                        f"{self.require_maps} needs coil maps with the data: {path} has no '{SENS_MAPS_KEY}' and "
                        f"no ESPIRiT cache in {espirit_cache_dir(folder)}; compute them with: "
                        f"{espirit_command(folder)}"
                    )
        mask_func = build_mask_func(**self.mask_cfg)
        dataset = MultiCoilSliceDataset(
            folder,
            challenge="multicoil",
            transform=MRISliceTransform(mask_func, use_seed=split != "train"),
            raw_sample_filter=None if names is None else (lambda raw: raw.fname.name in names),
        )
        require(len(dataset) > 0, f"split '{split}' has no slices (folder {folder}, split file {self.split_file})")
        self.datasets[(split, purpose)] = dataset
        return dataset

    def setup(self, stage: str | None = None) -> None:
        train, val = self.fit_splits
        needed: dict[str, Sequence[tuple[str, str]]] = {
            "fit": ((train, "fit"), (val, "fit")),
            "validate": ((val, "fit"),),
            "test": ((self.eval_split, "eval"),),
        }
        for split, purpose in needed.get(stage or "", ((train, "fit"), (val, "fit"), (self.eval_split, "eval"))):
            self._dataset(split, purpose)

    def _loader(self, split: str, purpose: str, training: bool) -> DataLoader:
        return DataLoader(
            self._dataset(split, purpose),
            batch_size=self.batch_size if training else 1,
            shuffle=training,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.fit_splits[0], "fit", training=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.fit_splits[1], "fit", training=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.eval_split, "eval", training=False)
