"""ESPIRiT maps for data without maps: computed, cached beside the folder, picked up by the datamodule."""

import numpy as np
import pytest

from spade_pl.data.datamodule import FastMRIDataModule
from spade_pl.data.embedded import birdcage_maps, load_anatomy, simulate_volume
from spade_pl.data.fastmri_h5 import write_multicoil_file
from spade_pl.errors import SpadeInputError
from spade_pl.espirit import cache_folder, espirit_cache_dir, main

MASK = {"mask_type": "equispaced", "accelerations": [4], "center_fractions": [0.25]}


@pytest.fixture
def folder_without_maps(tmp_path):
    """A fastMRI-format folder whose files carry no maps (like real fastMRI data); true maps kept aside."""
    rng = np.random.default_rng(0)
    true_maps = birdcage_maps(4, 32)
    images = load_anatomy(32, 90, 92)
    data = tmp_path / "multicoil"
    for split in ("train", "val", "test"):
        (data / split).mkdir(parents=True)
        write_multicoil_file(data / split / f"{split}.h5", simulate_volume(images, true_maps, rng, 0.0))
    return data, true_maps, images


def test_espirit_maps_match_the_true_maps_and_are_cached(folder_without_maps):
    data, true_maps, images = folder_without_maps
    written = cache_folder(data, calib_width=12)
    assert sorted(p.parent.name for p in written) == ["test_espirit", "train_espirit", "val_espirit"]
    import h5py

    with h5py.File(espirit_cache_dir(data / "test") / "test.h5") as hf:
        maps = hf["sens_maps"][()]
    assert maps.shape == (2, 4, 32, 32)
    support = images[0] > 0.2 * images[0].max()
    # ESPIRiT recovers the maps up to one phase per pixel: |Σ conj(m) S| ≈ 1 inside the object
    agreement = np.abs((np.conj(maps[0]) * true_maps).sum(0))[support]
    assert agreement.mean() > 0.95
    assert cache_folder(data, calib_width=12) == []  # cached: nothing recomputed


def test_datamodule_uses_the_cache_and_explains_a_missing_one(folder_without_maps):
    data, _, _ = folder_without_maps
    dm = FastMRIDataModule(root=str(data), mask=MASK, require_maps="network=deq")
    with pytest.raises(SpadeInputError, match=r"network=deq needs coil maps .*python -m spade_pl.espirit .*test"):
        dm.setup("test")
    assert main([str(data), "--calib-width", "12"]) == 0
    dm = FastMRIDataModule(root=str(data), mask=MASK, require_maps="network=deq")
    dm.setup("test")
    assert next(iter(dm.test_dataloader())).maps.shape == (1, 4, 32, 32, 2)


def test_espirit_cli_bad_folder(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "error: data folder" in capsys.readouterr().err
