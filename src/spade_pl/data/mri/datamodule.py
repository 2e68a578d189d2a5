"""LightningDataModule over fastMRI-format multi-coil HDF5 folders (real fastMRI data or the embedded default)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from fastmri.data import SliceDataset, VolumeSampler
from omegaconf import OmegaConf
from torch.utils.data import DistributedSampler, Sampler, default_collate

from spade_pl.core.errors import SpadeInputError, require
from spade_pl.data.mri.embedded import EmbeddedMRIBuilder, birdcage_maps, load_anatomy, simulate_volume
from spade_pl.data.mri.espirit import espirit_cache_dir, espirit_command
from spade_pl.data.mri.hdf5 import SENS_MAPS_KEY, check_multicoil_file
from spade_pl.data.mri.reconstruction import MRIReconstructions, stores_mask
from spade_pl.data.mri.slice_transform import MRISample, MRISliceTransform
from spade_pl.data.splits import SplitDataModule, Splits
from spade_pl.data.subsets import Subset
from spade_pl.physics.base import COIL_MAPS
from spade_pl.physics.masks import build_mask_func
from spade_pl.physics.mri import MultiCoilMRI

#: what a user without problem.mask does to measure fully sampled k-space
SET_MASK = "set one with mask=fastmri or mask=reference (or problem.mask.<key>=...)"


def maps_source(path: Path) -> Path | None:
    """The file holding ``path``'s coil maps: the file itself (key ``sens_maps``), its ESPIRiT cache, or none."""
    with h5py.File(path, "r") as hf:
        if SENS_MAPS_KEY in hf:
            return path
    cached = espirit_cache_dir(path.parent) / path.name
    return cached if cached.is_file() else None


def synthetic_mri_batch(size: int, coils: int, mask: dict, seed: int = 0) -> MRISample:
    """One realistic slice (MNI152 anatomy, birdcage coils, smooth phase) of ``size``² with ``coils`` coils."""
    rng = np.random.default_rng(seed)
    image = load_anatomy(size, 95, 96)
    maps = birdcage_maps(coils, size).astype(np.complex64)
    kspace = simulate_volume(image, maps, rng, noise_std=0.0)[0].astype(np.complex64)
    attrs = {"padding_left": 0, "padding_right": size, "recon_size": (size, size), SENS_MAPS_KEY: {0: maps}}
    sample = MRISliceTransform(build_mask_func(**mask), use_seed=True)(kspace, None, None, attrs, "synthetic", 0)
    return default_collate([sample])


class MultiCoilSliceDataset(SliceDataset):
    """fastmri's SliceDataset that also hands the transform the slice's coil maps, when there are any."""

    def __getitem__(self, i: int):
        fname, dataslice, metadata = self.raw_samples[i]
        with h5py.File(fname, "r") as hf:
            kspace = hf["kspace"][dataslice]
            mask = hf["mask"][()] if "mask" in hf else None  # test and challenge files: already undersampled
            attrs = {**hf.attrs, **metadata}
        source = maps_source(fname)
        if source is not None:
            with h5py.File(source, "r") as hf:
                attrs[SENS_MAPS_KEY] = {dataslice: hf[SENS_MAPS_KEY][dataslice]}
        return self.transform(kspace, mask, None, attrs, fname.name, dataslice)


class WholeVolumes(DistributedSampler):
    """fastMRI's ``VolumeSampler`` (each volume on one rank, its slices in order, no shuffling) as a
    ``DistributedSampler``, which Lightning takes as it is instead of dealing the slices out to the ranks."""

    def __init__(self, dataset: SliceDataset):
        super().__init__(dataset, shuffle=False)
        self.volumes = VolumeSampler(dataset, num_replicas=self.num_replicas, rank=self.rank, shuffle=False)

    def __iter__(self) -> Iterator[int]:
        """This rank's slices, volume after volume, then repeated to the length every rank has (a rank without
        a volume repeats the data's first slice; the scores keep the whole volume's record)."""
        own = self.volumes.indices or [0]
        return iter((own * (1 + self.volumes.num_samples // len(own)))[: self.volumes.num_samples])

    def __len__(self) -> int:
        return self.volumes.num_samples


class FastMRIDataModule(SplitDataModule):
    """fastMRI-format multi-coil HDF5 folders (real fastMRI data or the embedded default), split by volume.

    Splits: see :mod:`spade_pl.data.splits` (keep a split file outside ``root``: fastmri's SliceDataset opens
    every file in its folder). Training masks are random per slice; validation and test masks are a fixed
    function of the file name (fastMRI's convention), also when test-time adaptation trains on the test split.
    """

    physics_type = MultiCoilMRI

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
        eval_mask: dict | None = None,
        sample_rate: float = 1.0,
        volume_sample_rate: float = 1.0,
        sample_seed: int = 0,
    ):
        super().__init__(batch_size, num_workers)
        require(
            root is not None or builder is not None, "data.root is not set; point it at a folder of fastMRI .h5 files"
        )
        self.root = Path(root) if root is not None else builder.root
        #: the sampling mask (``None``: not set; only files that store their own mask can then be used)
        self.mask_cfg = None if mask is None else OmegaConf.to_container(OmegaConf.create(dict(mask)))
        #: the mask of the scored measurements: ``mask`` with each key ``eval_mask`` sets (a transfer evaluation)
        changes = {
            k: v for k, v in OmegaConf.to_container(OmegaConf.create(dict(eval_mask or {}))).items() if v is not None
        }
        self.eval_mask_cfg = None if self.mask_cfg is None else self.mask_cfg | changes
        if self.mask_cfg is not None:
            for key in changes.keys() - self.mask_cfg.keys():
                raise SpadeInputError(f"data.eval_mask.{key} is unknown; allowed: {', '.join(self.mask_cfg)}")
            build_mask_func(**self.mask_cfg)  # validate early, before any work
            build_mask_func(**self.eval_mask_cfg)
        split_dirs = {"train": train_dir, "val": val_dir, "test": test_dir}
        self.splits = Splits(self.root, split_dirs, split_file, split_fractions, (".h5", ".hdf5"), "HDF5 (.h5)")
        self.builder = builder
        self.subset = Subset(sample_rate, volume_sample_rate, sample_seed)

    def evaluation_sampler(self, dataset: SliceDataset) -> Sampler | None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        return WholeVolumes(dataset) if distributed and torch.distributed.get_world_size() > 1 else None

    def reconstruction_dataset(self, split: str | None) -> MRIReconstructions:
        """Every slice of the files to reconstruct, in file and slice order: those directly in ``root``
        (``split=None``), or a split's; each file checked first. Files with a stored mask keep it, fully sampled
        ones are measured with the scored split's mask."""
        if split is not None:
            return MRIReconstructions(self._dataset(split, "eval"))
        require(self.root.is_dir(), f"data folder {self.root} does not exist (data.root)")
        files = sorted(p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in (".h5", ".hdf5"))
        require(bool(files), f"data folder {self.root} has no HDF5 (.h5) files to reconstruct (data.root)")
        for path in files:
            check_multicoil_file(path)
            require(
                self.eval_mask_cfg is not None or stores_mask(path),
                f"{path} stores no mask (fully sampled k-space) and problem.mask is not set, so it cannot be "
                f"undersampled; {SET_MASK}, or reconstruct only files that store their mask",
            )
        names = {p.name for p in files}
        mask_func = None if self.eval_mask_cfg is None else build_mask_func(**self.eval_mask_cfg)
        return MRIReconstructions(
            MultiCoilSliceDataset(
                self.root,
                challenge="multicoil",
                transform=MRISliceTransform(mask_func, use_seed=True),
                raw_sample_filter=lambda raw: raw.fname.name in names,
            )
        )

    def prepare_data(self) -> None:
        if self.builder is not None:
            self.builder()

    def synthetic_batch(self, size: int, coils: int) -> MRISample:
        """One realistic ``size``² slice with ``coils`` coils (the benchmark's fixed-size input)."""
        require(
            self.mask_cfg is not None,
            f"the benchmark measures a synthetic slice with problem.mask, which is not set; {SET_MASK}",
        )
        return synthetic_mri_batch(size, coils, self.mask_cfg)

    def mask_for(self, split: str, purpose: str) -> dict:
        """The mask settings of one dataset: ``eval_mask``'s for the scored measurements, else the training mask."""
        settings = self.eval_mask_cfg if self.scored(split, purpose) else self.mask_cfg
        require(
            settings is not None,
            f"{split} measures fully sampled k-space with problem.mask, which is not set; {SET_MASK}",
        )
        return settings

    def evaluation_conditions(self) -> dict[str, Any]:
        if self.eval_mask_cfg == self.mask_cfg:
            return {}
        return {"trained_mask": self.mask_cfg, "eval_mask": self.eval_mask_cfg}

    def build_dataset(self, split: str, purpose: str) -> MultiCoilSliceDataset:
        folder, files, _ = self.splits.files(split)
        files = self.subset.volumes(files, split)
        for path in files:
            check_multicoil_file(path)
            if COIL_MAPS in self.needs and maps_source(path) is None:
                raise SpadeInputError(
                    f"{self.needed_by} needs coil maps with the data: {path} has no '{SENS_MAPS_KEY}' and "
                    f"no ESPIRiT cache in {espirit_cache_dir(folder)}; compute them with: {espirit_command(folder)}"
                )
        dataset = MultiCoilSliceDataset(
            folder,
            challenge="multicoil",
            transform=MRISliceTransform(build_mask_func(**self.mask_for(split, purpose)), use_seed=split != "train"),
            raw_sample_filter=self.subset.slice_filter({p.name for p in files}, sliced=split == "train"),
        )
        require(
            len(dataset) > 0, f"split '{split}' has no slices (folder {folder}, split file {self.splits.split_file})"
        )
        return dataset
