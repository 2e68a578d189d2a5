"""Whole test volumes, dense vs pruned: each volume's slices in one forward (throughput), or, for an iterative
network with warm starts, slice by slice in order as ``stage=reconstruct`` runs them; the median over the volumes."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import torch

from spade_pl.benchmark.inputs import single_slices
from spade_pl.benchmark.settings import BenchmarkSettings
from spade_pl.benchmark.timing import interleaved_medians, on_device, place_networks, time_forwards, timing_flags
from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.sample import Sample


def benchmark_volumes(
    dense: MBDLNetwork, pruned: MBDLNetwork, volumes: Iterable[Sample], settings: BenchmarkSettings
) -> dict[str, Any]:
    """:func:`benchmark_volume` on each volume (``settings.volumes`` of them at most) and the medians: the
    per-volume line stands for the test volumes, not for whichever came first."""
    timed = [
        benchmark_volume(dense, pruned, volume, settings) for volume in itertools.islice(volumes, settings.volumes)
    ]
    result = {
        "volumes": len(timed),
        "slices": int(statistics.median(v["slices"] for v in timed)),
        "repeats": timed[0]["repeats"],
        "dense_ms": statistics.median(v["dense_ms"] for v in timed),
        "pruned_ms": statistics.median(v["pruned_ms"] for v in timed),
        "speedup": statistics.median(v["speedup"] for v in timed),
        "in_order": timed[0]["in_order"],
        "per_volume": timed,
    }
    if "iterations_per_slice" in timed[0]:
        result["iterations_per_slice"] = {
            name: statistics.mean(it for v in timed for it in v["iterations_per_slice"][name])
            for name in ("dense", "pruned")
        }
    return result


def benchmark_volume(
    dense: MBDLNetwork, pruned: MBDLNetwork, volume: Sample, settings: BenchmarkSettings
) -> dict[str, Any]:
    """Dense vs pruned on all of a volume's slices in one forward (throughput), with half the repetitions of
    the per-slice benchmark (at least 5): a volume forward costs as many slices as it has. An iterative network
    with ``settings.warm_start`` runs the slices one by one in order instead, each started from the previous
    slice's solution (as ``stage=reconstruct`` runs them), and its solver iterations per slice are kept."""
    timing = replace(settings, repeats=max(5, settings.repeats // 2), warmup=max(1, min(settings.warmup, 2)))
    networks = {"dense": dense, "pruned": pruned}
    in_order = settings.warm_start and dense.iterative
    iterations: dict[str, list[int]] = {}
    if in_order:
        seconds, iterations = time_slices_in_order(networks, volume, timing)
    else:
        seconds = time_forwards(networks, volume, timing, as_given=True)
    result = {
        "fname": volume.fname[0],
        "slices": int(volume.y.shape[0]),
        "repeats": timing.repeats,
        "in_order": in_order,
        "dense_ms": seconds["dense"] * 1000,
        "pruned_ms": seconds["pruned"] * 1000,
        "speedup": seconds["dense"] / seconds["pruned"],
    }
    if iterations:
        result["iterations_per_slice"] = iterations
    return result


def time_slices_in_order(
    networks: dict[str, MBDLNetwork], volume: Sample, settings: BenchmarkSettings
) -> tuple[dict[str, float], dict[str, list[int]]]:
    """Median seconds per volume of each network run on ``volume``'s slices one by one in order, each slice
    started from the previous slice's solution (:meth:`~spade_pl.models.base.MBDLNetwork.next_slice_of`), timed as
    :func:`time_forwards` times; and each network's solver iterations per slice (the last repetition's)."""
    slices = single_slices(volume)
    with timing_flags(settings) as kept:
        placed = place_networks(networks, slices[0], settings, kept, as_given=True)
        inputs = [(s.fname[0], int(s.slice_num[0]), *on_device(s, placed.device)) for s in slices]
        iterations: dict[str, list[int]] = {}

        def run_volume(net: MBDLNetwork) -> list[int]:
            counts = []
            for fname, slice_num, y, physics in inputs:
                net.next_slice_of(fname, slice_num)
                net(y, physics)
                counts.append(int(net.solver_stats["iterations"]))
            return counts

        def timed(name: str) -> None:
            iterations[name] = run_volume(placed.nets[name])

        with torch.no_grad():
            calls = {name: lambda n=name: timed(n) for name in networks}
            seconds = interleaved_medians(calls, settings, placed.device)
    return seconds, iterations
