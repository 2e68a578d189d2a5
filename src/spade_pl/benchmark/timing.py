"""Dense vs pruned test-time benchmark: same inputs, same process, warm-up, repetitions, medians.

Reports, for the whole MBDL forward and for the priors alone: median time, parameters and MACs
(:mod:`spade_pl.benchmark.macs`), the measured speed-up ``t_dense / t_pruned``, the MAC bound of the whole
forward (``MACs_dense / MACs_pruned``), measured/bound and the peak memory of one forward
(:mod:`spade_pl.benchmark.memory`).
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from spade_pl.benchmark.inputs import repeat_first_slice
from spade_pl.benchmark.macs import profile
from spade_pl.benchmark.memory import malloc_keeps_allocations, peak_memory_bytes
from spade_pl.benchmark.runtime import choose_memory_format, constants_fixed, prepare_runtime, resolve_runtime
from spade_pl.benchmark.settings import BenchmarkSettings
from spade_pl.models.base import MBDLNetwork
from spade_pl.models.varnet.instance_norm import measured_kernels
from spade_pl.physics.base import Physics
from spade_pl.physics.sample import Sample


def _timer(device: torch.device) -> Callable[[Callable[[], Any]], float]:
    """Seconds for one call: CUDA events + synchronisation on GPU, perf_counter on CPU."""
    if device.type == "cuda":

        def cuda_time(fn: Callable[[], Any]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end) / 1000

        return cuda_time

    def cpu_time(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return cpu_time


def interleaved_medians(calls: dict[str, Callable[[], Any]], settings: BenchmarkSettings, device) -> dict[str, float]:
    """Median seconds per call; the candidates alternate every repetition so drift hits them alike."""
    timer = _timer(device)
    for _ in range(settings.warmup):
        for fn in calls.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(settings.repeats):
        for name, fn in calls.items():
            samples[name].append(timer(fn))
    return {name: statistics.median(values) for name, values in samples.items()}


def set_layout(
    network: MBDLNetwork, y: Tensor, physics: Physics, settings: BenchmarkSettings, runtime: str = "eager"
) -> dict[str, Any]:
    """Put ``network``'s priors in ``settings.memory_format`` (``auto``: the faster of the two in ``runtime``,
    timed on ``y`` with half the repetitions of a benchmark, since it only ranks two candidates); return the
    choice."""
    choosing = replace(settings, repeats=max(3, settings.repeats // 2), warmup=max(1, min(settings.warmup, 2)))
    device = y.device

    def time_calls(calls: dict[str, Callable[[], Any]]) -> dict[str, float]:
        prepared = {name: prepare_runtime(call, runtime, device)[0] for name, call in calls.items()}
        return interleaved_medians(prepared, choosing, device)

    with torch.no_grad():
        return choose_memory_format(network, y, physics, settings.memory_format, time_calls)


def benchmark_pair(
    dense: MBDLNetwork, pruned: MBDLNetwork, batch: Sample, settings: BenchmarkSettings
) -> dict[str, Any]:
    """Time and count ``dense`` against ``pruned`` on ``batch``; return a JSON-ready dict.

    On a GPU, cuDNN picks each convolution's algorithm by timing the candidates for its shape (what a
    deployment does): its default heuristics were tuned on the usual widths, and pruned ones are unusual."""
    with timing_flags(settings) as kept:
        return _benchmark_pair(dense, pruned, batch, settings, kept)


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int, device: str = "cpu") -> float:
    """Median seconds of one call of ``fn`` after ``warmup`` calls, timed as the benchmark times: for the
    experiment scripts that time one thing at a time."""
    settings = BenchmarkSettings(repeats=repeats, warmup=warmup)
    return interleaved_medians({"call": fn}, settings, torch.device(device))["call"]


@contextlib.contextmanager
def timing_flags(settings: BenchmarkSettings) -> Iterator[bool]:
    """``settings.threads``, cuDNN's per-shape algorithm choice, the instance norms' measured kernels and
    (``keep_allocations``, CPU) malloc keeping its memory while timing; yields whether malloc keeps it. All
    restored afterwards, so that a process that goes on (a sweep's joblib worker runs the next job in it)
    computes as it did before the benchmark."""
    cudnn, threads = torch.backends.cudnn, torch.get_num_threads()
    keep = settings.keep_allocations and settings.torch_device().type == "cpu"
    torch.set_num_threads(settings.threads)
    try:
        with (
            cudnn.flags(enabled=cudnn.enabled, benchmark=True, deterministic=False, allow_tf32=cudnn.allow_tf32),
            measured_kernels(),
            malloc_keeps_allocations(keep) as kept,
        ):
            yield kept
    finally:
        torch.set_num_threads(threads)


@dataclass
class PlacedNetworks:
    """Networks on the benchmark's device and input, each in its layout, and the runtime they run in."""

    nets: dict[str, MBDLNetwork]
    y: Tensor
    physics: Physics
    device: torch.device
    runtime: str
    layouts: dict[str, dict[str, Any]]
    malloc_kept: bool


def on_device(batch: Sample, device: torch.device) -> tuple[Tensor, Physics]:
    """A batch's measurements and operator on ``device``, the operator's constants fixed (one acquisition: no
    device reads in a forward)."""
    batch = type(batch)(*(t.to(device) if isinstance(t, Tensor) else t for t in batch))
    return batch.y, constants_fixed(batch.physics())


def place_networks(
    networks: dict[str, MBDLNetwork], batch: Sample, settings: BenchmarkSettings, kept: bool, as_given: bool = False
) -> PlacedNetworks:
    """``batch`` on the device (its first slice ``settings.slices`` times, or ``as_given``) and each network
    there in its layout (``kept``: whether malloc keeps its memory meanwhile, for the record)."""
    device = settings.torch_device()
    y, physics = on_device(batch if as_given else repeat_first_slice(batch, settings.slices), device)
    nets = {name: copy.deepcopy(net).to(device).eval() for name, net in networks.items()}
    runtime = resolve_runtime(settings.runtime, next(iter(nets.values())), device)
    layouts = {name: set_layout(net, y, physics, settings, runtime) for name, net in nets.items()}
    return PlacedNetworks(nets, y, physics, device, runtime, layouts, kept)


def _prepared_forwards(placed: PlacedNetworks) -> dict[str, tuple[Callable[[], Any], dict[str, Any]]]:
    """Each placed network's whole forward in the runtime, with what its preparation reports (under no_grad)."""
    return {
        name: prepare_runtime(lambda net=net: net(placed.y, placed.physics), placed.runtime, placed.device)
        for name, net in placed.nets.items()
    }


def time_forwards(
    networks: dict[str, MBDLNetwork], batch: Sample, settings: BenchmarkSettings, as_given: bool = False
) -> dict[str, float]:
    """Median seconds per whole forward of each network, timed as :func:`benchmark_pair` times a pair (same
    input, layouts, runtime; all interleaved): for choices that compare more than two networks, and for whole
    volumes (``as_given``: ``batch`` itself, not its first slice repeated)."""
    with timing_flags(settings) as kept:
        placed = place_networks(networks, batch, settings, kept, as_given)
        with torch.no_grad():
            calls = {name: call for name, (call, _) in _prepared_forwards(placed).items()}
            return interleaved_medians(calls, settings, placed.device)


def _benchmark_pair(
    dense: MBDLNetwork, pruned: MBDLNetwork, batch: Sample, settings: BenchmarkSettings, kept: bool
) -> dict[str, Any]:
    placed = place_networks({"dense": dense, "pruned": pruned}, batch, settings, kept)
    nets, y, physics, device, runtime = placed.nets, placed.y, placed.physics, placed.device, placed.runtime
    with torch.no_grad():
        profiles = {name: profile(net, y, physics) for name, net in nets.items()}
        prepared = _prepared_forwards(placed)
        iterations: dict[str, list[int]] = {name: [] for name in nets}

        def run_forward(name: str) -> None:
            prepared[name][0]()
            stats = nets[name].solver_stats
            if stats:
                iterations[name].append(int(stats["iterations"]))

        forward = interleaved_medians({n: (lambda n=n: run_forward(n)) for n in nets}, settings, device)

        def run_priors(name: str) -> tuple[Tensor, ...]:
            priors = nets[name].priors()
            return tuple(priors[prior_name](x) for prior_name, x in profiles[name]["inputs"].items())

        priors_only = {n: prepare_runtime(lambda n=n: run_priors(n), runtime, device)[0] for n in nets}
        prior_time = interleaved_medians(priors_only, settings, device)
        # after the timed forwards, so one-time workspaces (cuDNN's choice, the allocator's pools) are in place
        peaks = {name: peak_memory_bytes(lambda net=net: net(y, physics), device) for name, net in nets.items()}
    result: dict[str, Any] = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": settings.threads,
        "malloc_keeps_allocations": placed.malloc_kept,
        "repeats": settings.repeats,
        "warmup": settings.warmup,
        "input_shape": list(y.shape),
        "slices": settings.slices,
        "runtime": runtime,
    }
    for name in nets:
        prof = profiles[name]
        result[name] = {
            "forward_ms": forward[name] * 1000,
            "ms_per_slice": forward[name] * 1000 / settings.slices,
            "priors_ms": prior_time[name] * 1000,
            "params": prof["params"],
            "prior_params": prof["prior_params"],
            "macs_forward": prof["macs_forward"],
            "macs_parts": prof["macs_parts"],
            "macs_per_prior_call": prof["macs_per_prior_call"],
            "peak_forward_bytes": peaks[name],
            "weight_bytes": sum(
                t.numel() * t.element_size() for t in (*nets[name].parameters(), *nets[name].buffers())
            ),
            "memory_format": placed.layouts[name],
            "runtime": prepared[name][1],
        }
        if iterations[name]:  # every forward, warm-up included: the iterations the timings paid for
            result[name]["solver_iterations"] = spread(iterations[name])
    result["memory_ratio"] = peaks["dense"] / max(peaks["pruned"], 1)
    result["speedup_forward"] = forward["dense"] / forward["pruned"]
    result["speedup_priors"] = prior_time["dense"] / prior_time["pruned"]
    result["mac_bound_forward"] = profiles["dense"]["macs_forward"] / profiles["pruned"]["macs_forward"]
    result["measured_over_bound"] = result["speedup_forward"] / result["mac_bound_forward"]
    return result


def spread(values: list[int]) -> dict[str, float]:
    """Median, min and max of per-forward counts (solver iterations)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
