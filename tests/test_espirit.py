"""ESPIRiT maps for data without maps: computed, cached beside the folder, picked up by the datamodule."""

from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_NETWORKS, compose_tiny
from spade_pl.core.errors import SpadeInputError
from spade_pl.data.mri.datamodule import FastMRIDataModule
from spade_pl.data.mri.embedded import birdcage_maps, load_anatomy, simulate_volume
from spade_pl.data.mri.espirit import cache_folder, espirit_cache_dir, main
from spade_pl.data.mri.hdf5 import write_multicoil_file
from spade_pl.job.pipeline import run
from spade_pl.models import DEQ
from spade_pl.physics.mri import MultiCoilMRI

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

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
    dm = FastMRIDataModule(root=str(data), mask=MASK)
    dm.require(DEQ.needs_for(MultiCoilMRI), "network=deq")
    with pytest.raises(
        SpadeInputError, match=r"network=deq needs coil maps .*python -m spade_pl.data.mri.espirit .*test"
    ):
        dm.setup("test")
    assert main([str(data), "--calib-width", "12"]) == 0
    dm = FastMRIDataModule(root=str(data), mask=MASK)
    dm.require(DEQ.needs_for(MultiCoilMRI), "network=deq")
    dm.setup("test")
    assert next(iter(dm.test_dataloader())).maps.shape == (1, 4, 32, 32, 2)


def test_espirit_cli_bad_folder(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "error: data folder" in capsys.readouterr().err


def fastmri_folder(root, rng, maps_of_volume) -> None:
    """train/val/test folders of fastMRI-format files, with ``maps_of_volume(images, true_maps)`` as sens_maps."""
    true_maps = birdcage_maps(4, 32)
    for i, split in enumerate(("train", "train", "val", "test")):
        (root / split).mkdir(parents=True, exist_ok=True)
        images = load_anatomy(32, 84 + 4 * i, 88 + 4 * i)
        kspace = simulate_volume(images, true_maps, rng, 0.0)
        maps = maps_of_volume(images, true_maps)
        write_multicoil_file(root / split / f"{split}{i}.h5", kspace, sens_maps=maps)


def zero_outside_the_object(images: np.ndarray, true_maps: np.ndarray) -> np.ndarray:
    """The true maps where the anatomy is, exactly 0 elsewhere: what ESPIRiT's eigenvalue crop returns."""
    support = images > 0.05 * images.max()
    return (true_maps[None] * support[:, None]).astype(np.complex64)


READS_MAPS = {
    "varnet": ["network=varnet", *TINY_NETWORKS["varnet"]],
    "deq": ["network=deq", *TINY_NETWORKS["deq"]],
    "own": [
        "network=custom",
        "network.model={_target_: custom_network.UnrolledDnCNN, channels: 2, iterations: 2, features: 8, depth: 3}",
    ],
}
FASTMRI_RUN = ["logger=csv", "trainer.accelerator=cpu", "data.batch_size=2", "data.num_workers=0", "debug=limit"]


@pytest.mark.parametrize("network", sorted(READS_MAPS))
def test_every_network_that_reads_maps_trains_on_maps_with_zero_regions(network, tmp_path, cache_dir, monkeypatch):
    """A magnitude of an output that is exactly 0 (maps zero outside the object) has a gradient of 0 there, not
    NaN: the pruned and fine-tuned job trains and its losses stay finite."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    data = tmp_path / "data"
    fastmri_folder(data, np.random.default_rng(1), zero_outside_the_object)
    cfg = compose_tiny(
        tmp_path,
        cache_dir,
        "data=fastmri",
        f"data.root={data}",
        *READS_MAPS[network],
        *FASTMRI_RUN,
        "finetune=selfsup",
        "benchmark.repeats=1",
        "benchmark.warmup=0",
        tiny=False,
    )
    results = run(cfg)
    assert all(np.isfinite(m["mean"]["psnr"]) for name, m in results["models"].items() if name != "zero-filled")
    assert "pruned + selfsup" in results["models"]


def test_espirit_cached_maps_with_their_zero_crop_train_a_varnet(folder_without_maps, tmp_path, cache_dir):
    """The documented route for real fastMRI files: ``python -m spade_pl.data.mri.espirit <root>``, then
    ``network=varnet``."""
    data, _, _ = folder_without_maps
    fastmri_folder(data, np.random.default_rng(2), lambda images, maps: None)  # more volumes, no maps
    assert main([str(data), "--calib-width", "12"]) == 0
    import h5py

    with h5py.File(espirit_cache_dir(data / "train") / "train0.h5") as hf:
        assert (np.abs(hf["sens_maps"][()]).sum(1) == 0).mean() > 0.1  # the crop left regions of exact zeros
    cfg = compose_tiny(
        tmp_path,
        cache_dir,
        "data=fastmri",
        f"data.root={data}",
        *READS_MAPS["varnet"],
        *FASTMRI_RUN,
        "stage=pretrain",
        "pretrain.max_epochs=2",
        tiny=False,
    )
    assert Path(run(cfg)["checkpoint"]).is_file()
