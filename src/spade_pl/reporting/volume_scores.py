"""Scoring volumes as their slices stream in, in memory bounded by one volume.

A test pass sees each volume's slices one after another (a sequential loader; fastMRI's ``VolumeSampler`` under
DDP keeps a volume on one rank, in order). A volume's arrays are held until a slice of another volume arrives or
the pass ends; then the volume is scored (its metrics need the whole volume: the data range is the volume's
maximum) and its arrays dropped. Only numbers are kept, and only numbers cross ranks.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

from spade_pl.reporting.metrics import volume_metrics

METRIC_KEYS = ("psnr", "ssim", "zf_psnr", "zf_ssim")
#: an iterative network's solver iterations per slice (mean over a volume's slices), beside the metrics
ITERATIONS_KEY = "solver_iterations"


class VolumeScores:
    """Per-volume PSNR/SSIM of a reconstruction and of the baseline, under ``convention`` (``border`` pixels
    cropped); keeps the middle slice of the first volume it scores as the report's example."""

    def __init__(self, convention: str, border: int = 0):
        self.convention, self.border = convention, border
        self.records: dict[str, dict[str, Any]] = {}
        self.example: dict[str, np.ndarray] = {}
        self._volume: str | None = None
        self._slices: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._iterations: dict[int, int] = {}

    def add(
        self,
        volume: str,
        slice_num: int,
        prediction: np.ndarray,
        baseline: np.ndarray,
        target: np.ndarray,
        iterations: int | None = None,
    ):
        """One slice (and the solver iterations it took, for iterative networks); a slice of a volume already
        scored (a distributed sampler's padding) is ignored."""
        if volume in self.records:
            return
        if volume != self._volume:
            self._close()
            self._volume = volume
        self._slices[slice_num] = (prediction, baseline, target)
        if iterations is not None:
            self._iterations[slice_num] = iterations

    def finish(self) -> dict[str, dict[str, Any]]:
        """Score the open volume; the per-volume records of this pass, by volume."""
        self._close()
        return self.records

    def _close(self) -> None:
        if self._volume is None:
            return
        ordered = [self._slices[k] for k in sorted(self._slices)]
        prediction, baseline, target = (np.stack([s[j] for s in ordered]) for j in range(3))
        recon = volume_metrics(prediction, target, self.convention, self.border)
        zero = volume_metrics(baseline, target, self.convention, self.border)
        self.records[self._volume] = {
            "volume": self._volume,
            "slices": len(ordered),
            **recon,
            **{f"zf_{k}": v for k, v in zero.items()},
        }
        if self._iterations:
            self.records[self._volume][ITERATIONS_KEY] = float(np.mean(list(self._iterations.values())))
        if not self.example:
            middle = ordered[len(ordered) // 2]
            self.example = {"prediction": middle[0], "zero_filled": middle[1], "target": middle[2]}
        self._volume, self._slices, self._iterations = None, {}, {}


def more_slices(new: dict[str, Any], kept: dict[str, Any]) -> bool:
    """Of two ranks' records of one volume, the whole one: a rank that a distributed sampler padded with a slice
    of another rank's volume scored a part of it."""
    return new["slices"] > kept["slices"]


def summarise(records: dict[Hashable, dict[str, Any]], convention: str) -> dict[str, Any]:
    """The test results of every volume (sorted by name) and their mean (with the solver iterations per slice
    when every volume has them)."""
    per_volume = [records[name] for name in sorted(records)]
    keys = METRIC_KEYS + ((ITERATIONS_KEY,) if per_volume and all(ITERATIONS_KEY in v for v in per_volume) else ())
    mean = {k: float(np.mean([v[k] for v in per_volume])) for k in keys}
    return {"convention": convention, "mean": mean, "per_volume": per_volume}
