"""stage=reconstruct on files shaped like fastMRI's releases: test files (stored mask, no ground truth, readout
oversampled 2x), volumes of different coil counts and sizes, a knee-style volume with zero-padded phase-encode
edges, and fully sampled files (which are also scored); outputs in the file's own scale, atomic, resumable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from conftest import TINY_NETWORKS
from spade_pl.core.errors import SpadeInputError
from spade_pl.data.mri.embedded import birdcage_maps, load_anatomy
from spade_pl.data.mri.hdf5 import fft2c, ifft2c, rss
from spade_pl.job.pipeline import prepare, run

#: the tiny E2E-VarNet of the session's checkpoints, on fastMRI-format files
ON_FILES = ("data=fastmri", *TINY_NETWORKS["e2e_varnet"], "logger=csv", "trainer.accelerator=cpu", "data.num_workers=0")

HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>
<encodedSpace><matrixSize><x>{ex}</x><y>{ey}</y><z>1</z></matrixSize></encodedSpace>
<reconSpace><matrixSize><x>{rx}</x><y>{ry}</y><z>1</z></matrixSize></reconSpace>
<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{kmax}</maximum><center>{kcenter}</center>
</kspace_encoding_step_1></encodingLimits></encoding></ismrmrdHeader>"""


def _kspace(slices: int, coils: int, size: int, seed: int) -> np.ndarray:
    """Fully sampled multi-coil k-space of ``size`` x ``size`` anatomy, readout oversampled 2x (the image is
    zero-padded along the readout: its k-space has 2 x size rows), at fastMRI's magnitudes (~1e-4)."""
    images = load_anatomy(size, 80 + seed, 80 + seed + slices)
    images = np.pad(images, ((0, 0), (size // 2, size // 2), (0, 0)))
    maps = birdcage_maps(coils, 2 * size)[:, :, size // 2 : size // 2 + size]
    return (fft2c(images[:, None] * maps[None]) * 1e-4).astype(np.complex64)


def _test_file(path: Path, kspace: np.ndarray, acceleration: int = 4, padding: int = 0) -> None:
    """fastMRI's multicoil_test layout: undersampled k-space, its mask, no reconstruction_rss."""
    width = kspace.shape[-1]
    mask = np.zeros(width, bool)
    mask[::acceleration] = True
    low = max(2, round(0.08 * width))
    mask[width // 2 - low // 2 : width // 2 - low // 2 + low] = True
    mask[:padding] = mask[width - padding :] = False
    kspace = kspace * mask
    with h5py.File(path, "w") as hf:
        hf["kspace"] = kspace
        hf["mask"] = mask
        kmax, center = width - 1 - 2 * padding, width // 2 - padding
        hf["ismrmrd_header"] = HEADER.format(
            ex=kspace.shape[-2], ey=width, rx=kspace.shape[-2] // 2, ry=width, kmax=kmax, kcenter=center
        )
        hf.attrs["acceleration"] = acceleration
        hf.attrs["num_low_frequency"] = low
        hf.attrs["acquisition"] = "AXT2"


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scans")
    _test_file(folder / "test_brain_16coils.h5", _kspace(3, 16, 32, 0))
    _test_file(folder / "test_brain_4coils_wide.h5", _kspace(2, 4, 40, 1)[..., :36])
    _test_file(folder / "test_knee_padded.h5", _kspace(2, 6, 36, 2), padding=3)
    _fully_sampled_file(folder / "full.h5", _kspace(3, 8, 32, 3))
    return folder


def _fully_sampled_file(path: Path, kspace: np.ndarray) -> None:
    """A released training/validation file: full k-space, the RSS target cropped to the recon size."""
    height, width = kspace.shape[-2:]
    image = rss(ifft2c(kspace))
    top = (height - height // 2) // 2
    with h5py.File(path, "w") as hf:
        hf["kspace"] = kspace
        hf["reconstruction_rss"] = image[:, top : top + height // 2].astype(np.float32)
        hf["ismrmrd_header"] = HEADER.format(
            ex=height, ey=width, rx=height // 2, ry=width, kmax=width - 1, kcenter=width // 2
        )
        hf.attrs["max"] = float(image.max())
        hf.attrs["acquisition"] = "AXT2"


def test_every_scan_is_reconstructed_in_its_own_scale_and_the_fully_sampled_one_scored(make_cfg, pretrained, scans):
    dense = pretrained("debug=fdr")
    out = run(make_cfg("stage=reconstruct", f"ckpt_path={dense}", *ON_FILES, f"data.root={scans}", tiny=False))
    folder = Path(out["folder"])
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in scans.glob("*.h5"))
    for path in scans.glob("*.h5"):
        with h5py.File(path) as source, h5py.File(folder / path.name) as written:
            recon = written["reconstruction"][()]
            kspace = source["kspace"][()]
            assert recon.dtype == np.float32 and recon.shape == (
                kspace.shape[0],
                kspace.shape[-2] // 2,
                kspace.shape[-1],
            )
            zero_filled = rss(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, (-2, -1)), norm="ortho"), (-2, -1)))
            ratio = recon.mean() / zero_filled.mean()
            assert 0.2 < ratio < 5, (path.name, ratio)  # the file's scale, not the network's normalised one
    assert out["slices"] == 10 and out["slices_per_s"] > 0
    assert [v["volume"] for v in out["metrics"]["per_volume"]] == ["full.h5"]  # the one with ground truth
    assert json.loads((folder.parent / "reconstructions.json").read_text())["slices"] == 10


def test_a_full_disk_leaves_no_finished_looking_file_and_a_rerun_resumes(
    make_cfg, pretrained, scans, tmp_path, monkeypatch
):
    import errno

    import spade_pl.core.atomic_io

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "helpers"))
    from faults import FullDiskOS

    dense = pretrained("debug=fdr")
    cfg = ("stage=reconstruct", f"ckpt_path={dense}", *ON_FILES, f"data.root={scans}")
    monkeypatch.setattr(spade_pl.core.atomic_io, "os", FullDiskOS("test_knee_padded.h5"))  # the last volume
    with pytest.raises(OSError) as failed:
        run(make_cfg(*cfg, tiny=False))
    assert failed.value.errno == errno.ENOSPC and failed.value.filename.endswith("test_knee_padded.h5")
    folder = tmp_path / "run" / "reconstructions"
    assert sorted(p.name for p in folder.iterdir()) == ["full.h5", "test_brain_16coils.h5", "test_brain_4coils_wide.h5"]
    monkeypatch.undo()
    again = run(make_cfg(*cfg, tiny=False))
    assert [v["volume"] for v in again["volumes"] if not v.get("skipped")] == ["test_knee_padded.h5"]
    assert again["slices"] == 2 and (folder / "test_knee_padded.h5").is_file()


def test_the_embedded_test_split_reconstructs_with_the_scores_of_stage_test(make_cfg, pretrained):
    dense = pretrained("debug=fdr")
    tested = run(make_cfg("stage=test", f"ckpt_path={dense}"))
    rebuilt = run(make_cfg("stage=reconstruct", f"ckpt_path={dense}", "reconstruct.split=test"))
    assert rebuilt["metrics"]["per_volume"] == [
        {**v, "zf_psnr": z["psnr"], "zf_ssim": z["ssim"], "slices": rebuilt["metrics"]["per_volume"][i]["slices"]}
        for i, (v, z) in enumerate(
            zip(tested["models"]["model"]["per_volume"], tested["models"]["zero-filled"]["per_volume"], strict=True)
        )
    ]


def test_a_deq_starts_each_slice_from_the_previous_ones_solution(make_cfg, pretrained, tmp_path):
    """stage=test and stage=reconstruct start a slice from the one before alike; a cold start reaches the same
    reconstructions (within the solver's tolerance) in more iterations, the first slice of a volume excepted."""
    job = ("network=deq", f"ckpt_path={pretrained('network=deq', 'debug=fdr')}", "warm_start=true")
    tested = run(make_cfg(*job, "stage=test"))
    assert "| solver iterations per slice |" in (tmp_path / "run" / "results.md").read_text()
    warm = run(make_cfg(*job, "stage=reconstruct", "reconstruct.split=test"))
    assert (
        "solver iterations per slice (each slice started from the previous one's solution)"
        in (tmp_path / "run" / "reconstructions.md").read_text()
    )
    shutil.rmtree(tmp_path / "run" / "reconstructions")
    cold = run(make_cfg(*job[:2], "stage=reconstruct", "reconstruct.split=test"))  # the default: cold starts
    assert warm["metrics"]["per_volume"] == [
        {
            **v,
            "zf_psnr": z["psnr"],
            "zf_ssim": z["ssim"],
            "slices": w["slices"],
            "solver_iterations": w["solver_iterations"],
        }
        for v, z, w in zip(
            tested["models"]["model"]["per_volume"],
            tested["models"]["zero-filled"]["per_volume"],
            warm["metrics"]["per_volume"],
            strict=True,
        )
    ]
    assert tested["models"]["model"]["mean"]["solver_iterations"] == warm["metrics"]["mean"]["solver_iterations"]
    pairs = zip(warm["volumes"], cold["volumes"], strict=True)
    counts = [(w["solver_iterations"], c["solver_iterations"]) for w, c in pairs]
    assert all(w[0] == c[0] for w, c in counts) and sum(sum(w) for w, _ in counts) < sum(sum(c) for _, c in counts)
    for w, c in zip(warm["metrics"]["per_volume"], cold["metrics"]["per_volume"], strict=True):
        assert w["psnr"] == pytest.approx(c["psnr"], abs=0.05)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), r"^stage=reconstruct needs ckpt_path="),
        (("ckpt_path={dense}", "data.root={empty}"), r"has no HDF5 \(.h5\) files to reconstruct"),
        (("ckpt_path={dense}", "data.root={nan}"), r"k-space of bad.h5 slice 0 has NaN/inf values"),
    ],
)
def test_bad_reconstruct_inputs_are_one_line(make_cfg, pretrained, tmp_path, extra, message):
    dense = pretrained("debug=fdr")
    (tmp_path / "empty").mkdir()
    (tmp_path / "nan").mkdir()
    kspace = _kspace(1, 4, 32, 4)
    kspace[0, 0, 3, 3] = np.nan
    _test_file(tmp_path / "nan" / "bad.h5", kspace)
    args = [a.format(dense=dense, empty=tmp_path / "empty", nan=tmp_path / "nan") for a in extra]
    with pytest.raises(SpadeInputError, match=message):
        run(make_cfg("stage=reconstruct", *ON_FILES, "data.root=/unused", *args, tiny=False))
    assert not list((tmp_path / "run" / "reconstructions").glob("*.h5")) if (tmp_path / "run").exists() else True


def _low_resolution_images(folder: Path) -> dict[str, tuple[np.dtype, int]]:
    """Low-resolution images of every kind a user brings: {name: (stored dtype, channels as stored)}."""
    import png
    import tifffile
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    grey8 = (rng.random((12, 10)) * 255).astype(np.uint8)
    rgb16 = (rng.random((10, 14, 3)) * 65535).astype(np.uint16)
    Image.fromarray(grey8).save(folder / "grey8.png")
    with open(folder / "rgb16.png", "wb") as out:
        png.Writer(14, 10, greyscale=False, bitdepth=16).write_array(out, rgb16.ravel())
    tifffile.imwrite(folder / "float.tif", rng.random((11, 11)).astype(np.float32))
    Image.fromarray((rng.random((12, 12, 3)) * 255).astype(np.uint8)).save(folder / "photo.jpg")
    return {
        "grey8.png": (np.uint8, 1),
        "rgb16.png": (np.uint16, 3),
        "float.tif": (np.float32, 1),
        "photo.jpg": (np.uint8, 3),
    }


def test_low_resolution_images_come_back_super_resolved_in_their_own_format_and_bit_depth(
    make_cfg, pretrained, tmp_path
):
    from spade_pl.data.images.files import _stored_pixels, read_image

    model = pretrained("problem=sr", "debug=fdr")
    images = _low_resolution_images(tmp_path / "lr")
    cfg = make_cfg("problem=sr", "stage=reconstruct", f"ckpt_path={model}", f"data.root={tmp_path / 'lr'}")
    out = run(cfg)
    folder = Path(out["folder"])
    assert sorted(p.name for p in folder.iterdir()) == sorted(images)
    assert "metrics" not in out and out["slices"] == 4  # no ground truth: nothing scored
    ctx = prepare(cfg)
    network = ctx.networks.load(model)[0].eval()
    items = ctx.datamodule.reconstruction_dataset(None)
    for name, (dtype, _) in images.items():
        batch = default_collate([items.dataset[items.volumes[name][0]]])
        with torch.no_grad():
            expected = batch.image(network(batch.y, batch.physics()))[0, 0].clamp(0, 1).numpy()
        written = read_image(folder / name, 1)[0]
        assert _stored_pixels(folder / name, 3).dtype == dtype, name  # the source's bit depth
        assert written.shape == (2 * batch.y.shape[-2], 2 * batch.y.shape[-1]), name  # problem.scale=2
        error = np.abs(written - expected)
        if name.endswith(".jpg"):  # lossy: close on average
            assert error.mean() < 0.05, name
        else:  # exact up to the file's quantisation
            step = 1 / np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 0
            assert error.max() <= step / 2 + 1e-6, (name, error.max())


def test_an_image_split_reconstructs_with_the_scores_of_stage_test(make_cfg, pretrained):
    model = pretrained("problem=sr", "debug=fdr")
    tested = run(make_cfg("problem=sr", "stage=test", f"ckpt_path={model}"))
    rebuilt = run(make_cfg("problem=sr", "stage=reconstruct", f"ckpt_path={model}", "reconstruct.split=test"))
    assert [v["psnr"] for v in rebuilt["metrics"]["per_volume"]] == [
        v["psnr"] for v in tested["models"]["model"]["per_volume"]
    ]
    assert sorted(p.suffix for p in Path(rebuilt["folder"]).iterdir()) == [".png"] * 3


def test_a_fully_sampled_file_without_a_mask_to_measure_it_is_one_line(make_cfg, pretrained, scans):
    dense = pretrained("debug=fdr")
    cfg = make_cfg("stage=reconstruct", f"ckpt_path={dense}", *ON_FILES, f"data.root={scans}", "~mask", tiny=False)
    with pytest.raises(SpadeInputError, match=r"full.h5 stores no mask \(fully sampled k-space\) and problem.mask is"):
        run(cfg)


def test_files_that_store_their_mask_need_no_problem_mask(make_cfg, pretrained, scans, tmp_path):
    import shutil

    dense = pretrained("debug=fdr")
    (tmp_path / "scans").mkdir()
    for path in scans.glob("test_*.h5"):
        shutil.copy(path, tmp_path / "scans")
    cfg = ("stage=reconstruct", f"ckpt_path={dense}", *ON_FILES, f"data.root={tmp_path / 'scans'}", "~mask")
    out = run(make_cfg(*cfg, tiny=False))
    assert out["slices"] == 7 and "metrics" not in out
