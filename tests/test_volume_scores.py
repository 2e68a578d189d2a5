"""Scoring in bounded memory: a volume's slices are held only until the volume is scored; ranks exchange numbers.
A test pass's peak memory does not grow with the number of test volumes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from spade_pl.data.mri.hdf5 import ismrmrd_header
from spade_pl.reporting.metrics import volume_metrics
from spade_pl.reporting.volume_scores import VolumeScores, more_slices, summarise


def _volume(seed: int, slices: int = 4, size: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.random((slices, size, size)).astype(np.float32)
    return target + 0.1 * rng.random(target.shape), target + 0.3 * rng.random(target.shape), target


def test_streamed_scores_equal_the_whole_volumes_scored_at_once_and_hold_one_volume():
    volumes = {f"v{i}.h5": _volume(i) for i in range(3)}
    scores = VolumeScores("fastmri")
    for name, (prediction, baseline, target) in volumes.items():
        for k in reversed(range(len(target))):  # slice order within a volume does not matter
            scores.add(name, k, prediction[k], baseline[k], target[k])
            assert set(scores.records) == {n for n in volumes if n < name}  # earlier volumes scored, dropped
            assert len(scores._slices) <= len(target)
    scores.add("v0.h5", 0, *(a[0] for a in volumes["v0.h5"]))  # a sampler's padding: ignored
    records = scores.finish()
    for name, (prediction, baseline, target) in volumes.items():
        assert records[name]["slices"] == 4
        assert records[name]["psnr"] == volume_metrics(prediction, target, "fastmri")["psnr"]
        assert records[name]["zf_ssim"] == volume_metrics(baseline, target, "fastmri")["ssim"]
    assert np.array_equal(scores.example["target"], volumes["v0.h5"][2][2])  # the first volume's middle slice
    summary = summarise(records, "fastmri")
    assert [v["volume"] for v in summary["per_volume"]] == sorted(volumes)
    assert summary["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in records.values()]))


def test_solver_iterations_are_kept_per_volume_and_averaged_when_every_volume_has_them():
    scores = VolumeScores("fastmri")
    for name, counts in (("a.h5", [9, 4, 5]), ("b.h5", [8, 2, 2])):
        prediction, baseline, target = _volume(len(name), slices=len(counts))
        for k, count in enumerate(counts):
            scores.add(name, k, prediction[k], baseline[k], target[k], iterations=count)
    records = scores.finish()
    assert records["a.h5"]["solver_iterations"] == 6 and records["b.h5"]["solver_iterations"] == 4
    assert summarise(records, "fastmri")["mean"]["solver_iterations"] == 5
    del records["b.h5"]["solver_iterations"]  # a volume without them: no mean that stands for part of the split
    assert "solver_iterations" not in summarise(records, "fastmri")["mean"]


def test_of_two_ranks_records_of_a_volume_the_whole_one_wins():
    assert more_slices({"slices": 8}, {"slices": 1}) and not more_slices({"slices": 1}, {"slices": 8})


def _release_volume(path: Path, slices: int, coils: int, size: int) -> None:
    """A fastMRI-layout volume, readout oversampled 2x (target: the centre crop)."""
    rng = np.random.default_rng(0)
    shape = (slices, coils, 2 * size, size)
    with h5py.File(path, "w") as hf:
        hf["kspace"] = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64) * 1e-4
        hf["reconstruction_rss"] = rng.random((slices, size, size)).astype(np.float32)
        hf["ismrmrd_header"] = ismrmrd_header(2 * size, size, recon_size=(size, size))
        hf.attrs["max"] = 1.0
        hf.attrs["acquisition"] = "AXT2"


def peak_rss_mb(args: list[str], cwd: Path) -> float:
    """Peak resident memory of ``python -m spade_pl ARGS``, in MB (that process alone)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "spade_pl", *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, process.stderr.read().decode()[-3000:]
    return usage.ru_maxrss / 1024


@pytest.mark.slow
def test_peak_memory_of_a_test_pass_does_not_grow_with_the_test_volumes(tmp_path, pretrained, capsys):
    dense = pretrained("debug=fdr")
    peaks = {}
    for count in (4, 28):
        root = tmp_path / f"data{count}"
        for split in ("train", "val", "test"):
            (root / split).mkdir(parents=True)
        source = root / "volume.h5.src"
        _release_volume(source, slices=8, coils=2, size=192)
        for split in ("train", "val"):
            (root / split / "v0.h5").symlink_to(source)
        for i in range(count):  # distinct volumes by name, one file on disk
            (root / "test" / f"v{i:02d}.h5").symlink_to(source)
        args = [
            "stage=test",
            f"ckpt_path={dense}",
            "data=fastmri",
            f"data.root={root}",
            "data.num_workers=0",
            "+network.model.output=rss",
            f"hydra.run.dir={tmp_path / f'run{count}'}",
            "network.model.num_cascades=2",
            "network.model.chans=4",
            "network.model.pools=2",
            "network.model.sens_chans=2",
            "network.model.sens_pools=2",
        ]
        peaks[count] = peak_rss_mb(args, tmp_path)
    with capsys.disabled():
        print(f"\npeak RSS of stage=test: {peaks}")
    # 192 more slices of 192 x 192: 85 MB more if the pass kept the images; it keeps numbers
    assert peaks[28] - peaks[4] < 30, peaks
