import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from fastmri.data import SliceDataset

from spade_pl.core.errors import SpadeInputError
from spade_pl.data.mri.datamodule import FastMRIDataModule
from spade_pl.data.mri.hdf5 import ifft2c, ismrmrd_header, rss, write_multicoil_file

MASK = {"mask_type": "equispaced", "accelerations": [4], "center_fractions": [0.08]}


def test_embedded_data_is_fastmri_schema_and_split_by_volume(tiny_data_root):
    manifest = json.loads((tiny_data_root / "manifest.json").read_text())["splits"]
    files = {split: sorted(p.name for p in (tiny_data_root / split).iterdir()) for split in manifest}
    assert files == {split: sorted(names) for split, names in manifest.items()}
    assert all(files.values())
    assert not (set(files["train"]) & set(files["val"]) | set(files["train"]) & set(files["test"]))
    # the unmodified fastmri SliceDataset reads it
    ds = SliceDataset(tiny_data_root / "train", challenge="multicoil")
    kspace, _, target, attrs, _, _ = ds[0]
    assert kspace.shape == (4, 32, 32) and kspace.dtype == np.complex64
    assert target.shape == (32, 32)
    assert attrs["recon_size"][:2] == (32, 32) and attrs["max"] > 0
    with h5py.File(next((tiny_data_root / "train").iterdir())) as hf:
        maps = hf["sens_maps"][0]
        assert np.allclose((np.abs(maps) ** 2).sum(0), 1, atol=1e-5)  # normalised coil maps
        assert np.allclose(rss(ifft2c(hf["kspace"][0][None]))[0], hf["reconstruction_rss"][0], atol=1e-5)


def source_slices(root) -> dict[str, dict[str, list[int]]]:
    """Which slice of the MNI152 template each file's slices are, read from the data: the ground-truth RSS of a
    slice is the anatomy's magnitude (coil maps with unit RSS), matched to the nearest template slice."""
    from spade_pl.data.mri.embedded import load_anatomy

    cfg = json.loads((root / "manifest.json").read_text())["config"]
    anatomy = load_anatomy(cfg["size"], cfg["first_slice"], cfg["last_slice"])
    found: dict[str, dict[str, list[int]]] = {}
    for split in ("train", "val", "test"):
        for path in sorted((root / split).glob("*.h5")):
            with h5py.File(path) as hf:
                rss = hf["reconstruction_rss"][()]
            distances = ((rss[:, None] - anatomy[None]) ** 2).sum((-2, -1))
            assert distances.min(1).max() < 1e-6  # every slice is exactly one template slice
            found.setdefault(split, {})[path.name] = [int(k) for k in distances.argmin(1)]
    return found


def test_slices_of_different_splits_never_touch(tiny_data_root):
    """Read from the files: each volume is consecutive template slices, and a slice of one split is never the
    same as, nor next to, a slice of another."""
    found = source_slices(tiny_data_root)
    owner: dict[int, str] = {}
    for split, volumes in found.items():
        for slices in volumes.values():
            assert slices == list(range(slices[0], slices[0] + len(slices)))
            for k in slices:
                assert k not in owner
                owner[k] = split
    assert set(found) == {"train", "val", "test"}
    for k, split in owner.items():
        assert owner.get(k + 1, split) == split  # the next template slice is in the same split, or in none


def test_embedded_build_is_deterministic_and_cached(tmp_path):
    from spade_pl.data.mri.embedded import EmbeddedMRIBuilder

    kwargs = dict(size=16, num_coils=2, first_slice=70, last_slice=90, slab_slices=2, gap_slices=1, seed=5)
    a, b = EmbeddedMRIBuilder(tmp_path / "a", **kwargs)(), EmbeddedMRIBuilder(tmp_path / "b", **kwargs)()
    for split in ("train", "val", "test"):
        for fa in sorted((a / split).iterdir()):
            with h5py.File(fa) as ha, h5py.File(b / split / fa.name) as hb:
                assert np.array_equal(ha["kspace"][()], hb["kspace"][()])
    stamp = (a / "manifest.json").stat().st_mtime_ns
    assert EmbeddedMRIBuilder(tmp_path / "a", **kwargs)() == a
    assert (a / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_embedded_config_too_small_for_all_splits(tmp_path):
    from spade_pl.data.mri.embedded import EmbeddedMRIBuilder

    builder = EmbeddedMRIBuilder(tmp_path, size=16, num_coils=2, first_slice=70, last_slice=76, slab_slices=2)
    with pytest.raises(SpadeInputError, match=r"no volume to split\(s\) \['val'"):
        builder()
    assert not builder.root.exists()


def test_datamodule_batches_from_embedded_data(tiny_data_root):
    dm = FastMRIDataModule(root=str(tiny_data_root), mask=MASK, batch_size=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.masked_kspace.shape == (2, 4, 32, 32, 2)
    assert batch.mask.dtype == torch.bool and batch.mask.shape == (2, 1, 1, 32, 1)
    assert batch.maps.shape == (2, 4, 32, 32, 2)
    assert batch.target.shape == (2, 32, 32)
    # per-slice normalisation: the largest measured k-space magnitude is 1
    mags = batch.masked_kspace.pow(2).sum(-1).sqrt().flatten(1).amax(1)
    assert torch.allclose(mags, torch.ones(2))
    # unmeasured columns are zero
    assert batch.masked_kspace[~batch.mask.expand_as(batch.masked_kspace)].abs().max() == 0


def test_val_and_test_masks_are_fixed_per_volume(tiny_data_root):
    dm = FastMRIDataModule(root=str(tiny_data_root), mask={**MASK, "mask_type": "random"})
    dm.setup("test")
    first = [s.mask for s in dm.test_dataloader()]
    second = [s.mask for s in dm.test_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def _sampled_fraction(loader) -> float:
    return float(torch.cat([s.mask.float().flatten() for s in loader]).mean())


def test_eval_mask_measures_only_the_scored_split_and_says_so(tiny_data_root):
    trained = FastMRIDataModule(root=str(tiny_data_root), mask=MASK)
    transfer = FastMRIDataModule(
        root=str(tiny_data_root), mask=MASK, eval_mask={"accelerations": [8], "mask_type": None}
    )
    for dm in (trained, transfer):
        dm.setup()
    assert trained.evaluation_conditions() == {}
    assert transfer.evaluation_conditions() == {"trained_mask": MASK, "eval_mask": {**MASK, "accelerations": [8]}}
    # the scored split is sampled at 8x, training and selection keep the 4x they were tuned with
    assert _sampled_fraction(transfer.test_dataloader()) < 0.8 * _sampled_fraction(trained.test_dataloader())
    for split in ("train_dataloader", "val_dataloader"):
        assert _sampled_fraction(getattr(transfer, split)()) == _sampled_fraction(getattr(trained, split)())
    # test-time adaptation fits on the scored measurements, so on the eval mask too
    adapting = transfer.fitting_on("test")
    assert _sampled_fraction(adapting.train_dataloader()) == _sampled_fraction(transfer.test_dataloader())


@pytest.mark.parametrize(
    ("eval_mask", "message"),
    [
        ({"accel": [8]}, "data.eval_mask.accel is unknown; allowed: mask_type, accelerations, center_fractions"),
        ({"accelerations": [8, 4]}, "must have equal length"),
        ({"mask_type": "spiral"}, "mask type 'spiral' is unknown"),
    ],
)
def test_a_bad_eval_mask_is_refused_before_any_work(tiny_data_root, eval_mask, message):
    with pytest.raises(SpadeInputError, match=message):
        FastMRIDataModule(root=str(tiny_data_root), mask=MASK, eval_mask=eval_mask)


def _hand_written_fastmri_file(path: Path, slices=2, coils=3, height=40, width=24, recon=(20, 20)):
    """A file written with plain h5py to the fastMRI schema (readout-oversampled like real brain data)."""
    rng = np.random.default_rng(0)
    kspace = rng.normal(size=(slices, coils, height, width)) + 1j * rng.normal(size=(slices, coils, height, width))
    with h5py.File(path, "w") as hf:
        hf["kspace"] = kspace.astype(np.complex64)
        hf["reconstruction_rss"] = np.ones((slices, *recon), np.float32)
        hf["ismrmrd_header"] = ismrmrd_header(height, width, recon_size=recon)
        hf.attrs["max"] = 1.0
        hf.attrs["norm"] = 1.0
        hf.attrs["acquisition"] = "CORPD_FBK"
        hf.attrs["patient_id"] = "hand"


def test_loader_reads_a_hand_written_fastmri_file(tmp_path):
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
        _hand_written_fastmri_file(tmp_path / split / f"file_{split}.h5")
    dm = FastMRIDataModule(root=str(tmp_path), mask=MASK)
    dm.setup("test")
    sample = next(iter(dm.test_dataloader()))
    assert sample.masked_kspace.shape == (1, 3, 40, 24, 2)
    assert sample.target.shape == (1, 20, 20)  # cropped to the header's recon size
    assert sample.maps.numel() == 0  # real fastMRI files carry no maps


def test_auto_split_by_volume(tmp_path):
    for i in range(5):
        _hand_written_fastmri_file(tmp_path / f"vol{i}.h5")
    dm = FastMRIDataModule(root=str(tmp_path), mask=MASK, split_fractions=[0.6, 0.2, 0.2])
    dm.setup()
    names = {s: {raw.fname.name for raw in dm._dataset(s).raw_samples} for s in ("train", "val", "test")}
    assert [len(v) for v in names.values()] == [3, 1, 1]
    assert set.union(*names.values()) == {f"vol{i}.h5" for i in range(5)}


def test_split_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        _hand_written_fastmri_file(data / f"vol{i}.h5")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["vol0.h5"], "val": ["vol1.h5"], "test": ["vol2.h5"]}))
    dm = FastMRIDataModule(root=str(data), mask=MASK, split_file=str(split))
    dm.setup("test")
    assert {raw.fname.name for raw in dm._dataset("test").raw_samples} == {"vol2.h5"}


def test_missing_folder_is_a_clear_error(tmp_path):
    dm = FastMRIDataModule(root=str(tmp_path / "nope"), mask=MASK)
    with pytest.raises(SpadeInputError, match=r"nope does not exist"):
        dm.setup("test")


def test_folder_without_hdf5_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(SpadeInputError, match="has no HDF5"):
        FastMRIDataModule(root=str(tmp_path), mask=MASK).setup("test")


def test_hdf5_without_kspace_names_the_file(tmp_path):
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
        _hand_written_fastmri_file(tmp_path / split / "good.h5")
    with h5py.File(tmp_path / "test" / "broken.h5", "w") as hf:
        hf["reconstruction_rss"] = np.zeros((1, 4, 4), np.float32)
    with pytest.raises(SpadeInputError, match=r"broken\.h5 has no 'kspace'"):
        FastMRIDataModule(root=str(tmp_path), mask=MASK).setup("test")


def test_non_hdf5_file_is_a_clear_error(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "fake.h5").write_text("not hdf5")
    with pytest.raises(SpadeInputError, match="fake.h5 is not a readable HDF5 file"):
        FastMRIDataModule(root=str(tmp_path), mask=MASK).setup("test")


def test_written_file_roundtrip(tmp_path):
    kspace = np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.complex64)
    path = write_multicoil_file(tmp_path / "x.h5", kspace)
    with h5py.File(path) as hf:
        assert np.array_equal(hf["kspace"][()], kspace)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write leaves no temp file


def _fastmri_release(root: Path, volumes: int = 6, slices: int = 8) -> dict[str, Path]:
    """fastMRI's released layout: multicoil_train/, multicoil_val/, multicoil_test/ side by side."""
    folders = {split: root / f"multicoil_{split}" for split in ("train", "val", "test")}
    for split, folder in folders.items():
        folder.mkdir(parents=True)
        for i in range(volumes):
            _hand_written_fastmri_file(folder / f"{split}_{i}.h5", slices=slices)
    return folders


def test_the_multicoil_layout_reads_through_the_split_folder_keys(tmp_path, make_cfg):
    from spade_pl.core.instantiate import build

    folders = _fastmri_release(tmp_path / "fastmri", volumes=4, slices=2)
    overrides = [f"data.{split}_dir={folder}" for split, folder in folders.items()]
    cfg = make_cfg("data=fastmri", f"data.root={tmp_path / 'fastmri'}", *overrides, tiny=False)
    dm = build(cfg.data)
    dm.setup()
    for split in ("train", "val", "test"):
        assert {raw.fname.parent for raw in dm._dataset(split).raw_samples} == {folders[split]}
    # what docs Your data shows: train from multicoil_train, multicoil_val halved by volume into val and test
    cfg = make_cfg(
        "data=fastmri",
        f"data.train_dir={folders['train']}",
        f"data.root={folders['val']}",
        "data.split_fractions=[0,0.5,0.5]",
        tiny=False,
    )
    dm = build(cfg.data)
    dm.setup()
    val, test = ({raw.fname.name for raw in dm._dataset(s).raw_samples} for s in ("val", "test"))
    assert len(val) == len(test) == 2 and not val & test and (val | test) == {f"val_{i}.h5" for i in range(4)}


def test_volume_sample_rate_keeps_whole_volumes_drawn_the_same_way_every_time(tmp_path):
    folders = _fastmri_release(tmp_path)

    def volumes(**rates) -> dict[str, set[str]]:
        dm = FastMRIDataModule(root=str(tmp_path), mask=MASK, **_dirs(folders), **rates)
        dm.setup()
        return {s: {raw.fname.name for raw in dm._dataset(s).raw_samples} for s in ("train", "val", "test")}

    half = volumes(volume_sample_rate=0.5)
    assert [len(v) for v in half.values()] == [3, 3, 3] and half == volumes(volume_sample_rate=0.5)
    assert half != volumes(volume_sample_rate=0.5, sample_seed=1)
    dm = FastMRIDataModule(root=str(tmp_path), mask=MASK, **_dirs(folders), volume_sample_rate=0.5)
    dm.setup()
    per_volume = {}
    for raw in dm._dataset("test").raw_samples:
        per_volume[raw.fname.name] = per_volume.get(raw.fname.name, 0) + 1
    assert set(per_volume.values()) == {8}  # no volume split


def test_sample_rate_thins_the_training_slices_and_scores_whole_volumes(tmp_path):
    folders = _fastmri_release(tmp_path, volumes=4, slices=25)
    dm = FastMRIDataModule(root=str(tmp_path), mask=MASK, **_dirs(folders), sample_rate=0.2)
    dm.setup()
    assert 0.08 < len(dm._dataset("train", "train").raw_samples) / 100 < 0.35
    assert len(dm._dataset("test").raw_samples) == 100 and len(dm._dataset("val", "val").raw_samples) == 100


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ({"sample_rate": 0.0}, r"data.sample_rate=0.0 is invalid; allowed: 0 < x <= 1"),
        ({"volume_sample_rate": 1.5}, r"data.volume_sample_rate=1.5 is invalid"),
        ({"sample_rate": 0.5, "volume_sample_rate": 0.5}, r"one of them below 1 at a time"),
    ],
)
def test_bad_sample_rates_are_one_line(tmp_path, rates, message):
    with pytest.raises(SpadeInputError, match=message):
        FastMRIDataModule(root=str(tmp_path), mask=MASK, **rates)


def _dirs(folders: dict[str, Path]) -> dict[str, str]:
    return {f"{split}_dir": str(folder) for split, folder in folders.items()}
