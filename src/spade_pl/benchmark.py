"""Dense vs pruned test-time benchmark: same inputs, same process, warm-up, repetitions, medians.

Reports, for the whole MBDL forward and for the priors alone: median time, parameters and MACs, the
measured speed-up ``t_dense / t_pruned``, the MAC bound of the whole forward (``MACs_dense / MACs_pruned``)
and measured/bound. Whole-forward MACs = the layers of every module (priors and unpruned parts such as the
sensitivity net, torch-pruning's counter) + the FFTs of the physics (5 N log2 N flops per transform = 2.5 N
log2 N MACs); the elementwise data-consistency arithmetic is not counted.

On CPU, glibc's malloc hands every large buffer back to the OS after use, so each forward pays millions of
page faults (measured here: a third of the dense forward). ``keep_allocations`` tells malloc to keep its
memory (what jemalloc/tcmalloc deployments do); it applies to the whole process, dense and pruned alike.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from spade_pl.batch import Sample
from spade_pl.errors import require, require_int
from spade_pl.inference import (
    CHOICES,
    RUNTIMES,
    choose_memory_format,
    constants_fixed,
    prepare_runtime,
    resolve_runtime,
)
from spade_pl.models.base import MBDLNetwork
from spade_pl.models.norms import measured_kernels
from spade_pl.physics.base import Physics
from spade_pl.pruning.spade import capture_prior_inputs, count_macs, count_params


@dataclass(frozen=True)
class BenchmarkSettings:
    repeats: int = 20
    warmup: int = 3
    threads: int = 2
    device: str = "auto"
    size: int | None = None  # None: the first test slice of the data; else a synthetic size x size slice
    coils: int = 16
    keep_allocations: bool = True
    slices: int = 1  # slices per forward (that slice repeated): 1 = latency; more = throughput on a GPU
    memory_format: str = "auto"  # the priors' layout (spade_pl.inference): auto = the faster, per network
    runtime: str = "auto"  # eager | cuda_graph (spade_pl.inference); auto = cuda_graph on a GPU (unrolled nets)

    def __post_init__(self) -> None:
        for key, minimum in (("repeats", 1), ("warmup", 0), ("threads", 1), ("slices", 1), ("coils", 1)):
            require_int(f"benchmark.{key}", getattr(self, key), minimum)
        require(
            self.memory_format in CHOICES,
            f"benchmark.memory_format={self.memory_format!r} is unknown; allowed: {', '.join(CHOICES)}",
        )
        require(
            self.runtime in RUNTIMES,
            f"benchmark.runtime={self.runtime!r} is unknown; allowed: {', '.join(RUNTIMES)}",
        )
        if self.size is not None:
            require_int("benchmark.size", self.size, 8)

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def repeat_first_slice(batch: Sample, slices: int) -> Sample:
    """A batch of ``slices`` copies of ``batch``'s first slice (what one forward of the benchmark processes)."""
    return type(batch)(
        *(
            t[:1].repeat(slices, *[1] * (t.dim() - 1)) if isinstance(t, Tensor) and t.dim() else [t[0]] * slices
            for t in batch
        )
    )


def keep_malloc_allocations() -> bool:
    """Ask glibc malloc never to return memory to the OS (no mmap, no trimming); False where not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4
    return all(
        libc.mallopt(opt, val) == 1 for opt, val in ((m_mmap_max, 0), (m_trim_threshold, 1 << 30), (m_top_pad, 1 << 30))
    )


def _fft_flops(x_shape, dim, *_args, out_shape=None, **_kwargs) -> int:
    n = math.prod(x_shape[d] for d in dim)
    return int(5 * (math.prod(x_shape) // n) * n * math.log2(max(n, 2)))


def count_forward_macs(network: MBDLNetwork, y: Tensor, physics: Physics) -> int:
    """MACs of one whole forward: every module's layers (torch-pruning) + the FFTs (FlopCounterMode)."""
    ffts = (torch.ops.aten._fft_c2c, torch.ops.aten._fft_r2c, torch.ops.aten._fft_c2r)
    counter = FlopCounterMode(display=False, custom_mapping={op: _fft_flops for op in ffts})
    with counter:
        network(y, physics)
    fft_flops = sum(n for op, n in counter.get_flop_counts()["Global"].items() if op in ffts)
    return count_macs(network, (y, physics)) * y.shape[0] + fft_flops // 2


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


def _interleaved_medians(calls: dict[str, Callable[[], Any]], settings: BenchmarkSettings, device) -> dict[str, float]:
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
        return _interleaved_medians(prepared, choosing, device)

    with torch.no_grad():
        return choose_memory_format(network, y, physics, settings.memory_format, time_calls)


def _profile(network: MBDLNetwork, y: Tensor, physics: Physics) -> dict[str, Any]:
    priors = network.priors()
    inputs = capture_prior_inputs(network, y, physics, list(priors))
    return {
        "params": count_params(network),
        "prior_params": sum(count_params(p) for p in priors.values()),
        "macs_forward": count_forward_macs(network, y, physics),
        "macs_per_prior_call": {name: count_macs(priors[name], x) * x.shape[0] for name, x in inputs.items()},
        "inputs": inputs,
    }


def benchmark_pair(
    dense: MBDLNetwork, pruned: MBDLNetwork, batch: Sample, settings: BenchmarkSettings
) -> dict[str, Any]:
    """Time and count ``dense`` against ``pruned`` on ``batch``; return a JSON-ready dict.

    On a GPU, cuDNN picks each convolution's algorithm by timing the candidates for its shape (what a
    deployment does): its default heuristics were tuned on the usual widths, and pruned ones are unusual."""
    with _timing_flags(settings):
        return _benchmark_pair(dense, pruned, batch, settings)


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int, device: str = "cpu") -> float:
    """Median seconds of one call of ``fn`` after ``warmup`` calls, timed as the benchmark times: for the
    experiment scripts that time one thing at a time."""
    settings = BenchmarkSettings(repeats=repeats, warmup=warmup)
    return _interleaved_medians({"call": fn}, settings, torch.device(device))["call"]


@contextlib.contextmanager
def _timing_flags(settings: BenchmarkSettings) -> Iterator[None]:
    """``settings.threads``, cuDNN's per-shape algorithm choice and the instance norms' measured kernels while
    timing; all restored afterwards, so that a process that goes on (a sweep's joblib worker runs the next job
    in it) computes as before."""
    cudnn, threads = torch.backends.cudnn, torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        with (
            cudnn.flags(enabled=cudnn.enabled, benchmark=True, deterministic=False, allow_tf32=cudnn.allow_tf32),
            measured_kernels(),
        ):
            yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class _Timed:
    """Networks on the benchmark's device and input, each in its layout, and the runtime they run in."""

    nets: dict[str, MBDLNetwork]
    y: Tensor
    physics: Physics
    device: torch.device
    runtime: str
    layouts: dict[str, dict[str, Any]]
    malloc_kept: bool


def _place(networks: dict[str, MBDLNetwork], batch: Sample, settings: BenchmarkSettings) -> _Timed:
    device = settings.torch_device()
    kept = settings.keep_allocations and device.type == "cpu" and keep_malloc_allocations()
    batch = repeat_first_slice(batch, settings.slices)
    batch = type(batch)(*(t.to(device) if isinstance(t, Tensor) else t for t in batch))
    physics, y = constants_fixed(batch.physics()), batch.y  # one acquisition: no device reads in a forward
    nets = {name: copy.deepcopy(net).to(device).eval() for name, net in networks.items()}
    runtime = resolve_runtime(settings.runtime, next(iter(nets.values())), device)
    layouts = {name: set_layout(net, y, physics, settings, runtime) for name, net in nets.items()}
    return _Timed(nets, y, physics, device, runtime, layouts, kept)


def _prepared_forwards(placed: _Timed) -> dict[str, tuple[Callable[[], Any], dict[str, Any]]]:
    """Each placed network's whole forward in the runtime, with what its preparation reports (under no_grad)."""
    return {
        name: prepare_runtime(lambda net=net: net(placed.y, placed.physics), placed.runtime, placed.device)
        for name, net in placed.nets.items()
    }


def time_forwards(networks: dict[str, MBDLNetwork], batch: Sample, settings: BenchmarkSettings) -> dict[str, float]:
    """Median seconds per whole forward of each network, timed as :func:`benchmark_pair` times a pair (same
    input, layouts, runtime; all interleaved): for choices that compare more than two networks."""
    with _timing_flags(settings):
        placed = _place(networks, batch, settings)
        with torch.no_grad():
            calls = {name: call for name, (call, _) in _prepared_forwards(placed).items()}
            return _interleaved_medians(calls, settings, placed.device)


def _benchmark_pair(
    dense: MBDLNetwork, pruned: MBDLNetwork, batch: Sample, settings: BenchmarkSettings
) -> dict[str, Any]:
    placed = _place({"dense": dense, "pruned": pruned}, batch, settings)
    nets, y, physics, device, runtime = placed.nets, placed.y, placed.physics, placed.device, placed.runtime
    with torch.no_grad():
        profiles = {name: _profile(net, y, physics) for name, net in nets.items()}
        prepared = _prepared_forwards(placed)
        iterations: dict[str, list[int]] = {name: [] for name in nets}

        def run_forward(name: str) -> None:
            prepared[name][0]()
            stats = getattr(nets[name], "solver_stats", None)
            if stats:
                iterations[name].append(int(stats["iterations"]))

        forward = _interleaved_medians({n: (lambda n=n: run_forward(n)) for n in nets}, settings, device)

        def run_priors(name: str) -> tuple[Tensor, ...]:
            priors = nets[name].priors()
            return tuple(priors[prior_name](x) for prior_name, x in profiles[name]["inputs"].items())

        priors_only = {n: prepare_runtime(lambda n=n: run_priors(n), runtime, device)[0] for n in nets}
        prior_time = _interleaved_medians(priors_only, settings, device)
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
            "macs_per_prior_call": prof["macs_per_prior_call"],
            "memory_format": placed.layouts[name],
            "runtime": prepared[name][1],
        }
        if iterations[name]:  # every forward, warm-up included: the iterations the timings paid for
            result[name]["solver_iterations"] = _spread(iterations[name])
    result["speedup_forward"] = forward["dense"] / forward["pruned"]
    result["speedup_priors"] = prior_time["dense"] / prior_time["pruned"]
    result["mac_bound_forward"] = profiles["dense"]["macs_forward"] / profiles["pruned"]["macs_forward"]
    result["measured_over_bound"] = result["speedup_forward"] / result["mac_bound_forward"]
    return result


def _spread(values: list[int]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def benchmark_markdown(result: dict[str, Any]) -> str:
    d, p = result["dense"], result["pruned"]
    slices, threads = result.get("slices", 1), result["threads"]
    rows = [
        (
            f"whole forward ({slices} slice{'s' * (slices > 1)}), median ms",
            f"{d['forward_ms']:.1f}",
            f"{p['forward_ms']:.1f}",
            f"{result['speedup_forward']:.2f}x",
        ),
        (
            "priors only, median ms",
            f"{d['priors_ms']:.1f}",
            f"{p['priors_ms']:.1f}",
            f"{result['speedup_priors']:.2f}x",
        ),
        ("parameters (network)", f"{d['params']:,}", f"{p['params']:,}", f"{p['params'] / d['params']:.1%}"),
        (
            "parameters (priors)",
            f"{d['prior_params']:,}",
            f"{p['prior_params']:,}",
            f"{p['prior_params'] / d['prior_params']:.1%}",
        ),
        (
            "MACs, whole forward",
            f"{d['macs_forward']:,}",
            f"{p['macs_forward']:,}",
            f"bound {result['mac_bound_forward']:.2f}x",
        ),
    ]
    for name in d["macs_per_prior_call"]:
        a, b = d["macs_per_prior_call"][name], p["macs_per_prior_call"][name]
        rows.append((f"MACs per call, {name}", f"{a:,}", f"{b:,}", f"{a / b:.2f}x"))
    if "memory_format" in d:

        def layout(chosen: dict[str, Any]) -> str:
            timed = ", ".join(f"{name} {ms:.1f} ms" for name, ms in chosen.get("candidates_ms", {}).items())
            return f"{chosen['chosen']} ({timed})" if timed else chosen["chosen"]

        rows.append(("priors' memory format", layout(d["memory_format"]), layout(p["memory_format"]), ""))
    if "solver_iterations" in d:

        def spread(it: dict[str, float]) -> str:
            return f"{it['median']:g} (min {it['min']:g}, max {it['max']:g})"

        rows.append(
            ("solver iterations per forward", spread(d["solver_iterations"]), spread(p["solver_iterations"]), "")
        )
    if "runtime" in d:

        def prepared(info: dict[str, Any]) -> str:
            if "prepare_s" not in info:  # eager: the reference itself
                return info["runtime"]
            return f"{info['runtime']} (prepared in {info['prepare_s']:.1f} s; {info['relative_difference']:.0e})"

        rows.append(
            ("runtime (output vs eager: max relative difference)", prepared(d["runtime"]), prepared(p["runtime"]), "")
        )
    lines = [
        f"Benchmark on {result['device']}{f' ({threads} threads)' if result['device'] == 'cpu' else ''}, "
        f"input {result['input_shape']}, "
        f"{result['warmup']} warm-up + {result['repeats']} repetitions, medians, dense and pruned interleaved, "
        f"runtime {result.get('runtime', 'eager')}",
        "",
        "| | dense | pruned | pruned vs dense |",
        "|---|---:|---:|---:|",
        *[f"| {a} | {b} | {c} | {e} |" for a, b, c, e in rows],
        "",
        f"Measured whole-forward speed-up {result['speedup_forward']:.2f}x = "
        f"{result['measured_over_bound']:.0%} of the MAC bound {result['mac_bound_forward']:.2f}x.",
    ]
    return "\n".join(lines) + "\n"
