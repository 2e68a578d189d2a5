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
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
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
from spade_pl.pruning.spade import count_macs, count_params


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
    volume: bool = True  # also time one whole test volume per forward (throughput), in stage=spade and benchmark

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


def first_volume(batches: Iterable[Sample]) -> Sample:
    """The slices of the first volume of ``batches`` (an evaluation loader, in volume order) in one batch."""
    parts: list[Sample] = []
    for batch in batches:
        if parts and batch.fname[0] != parts[0].fname[0]:
            break
        parts.append(batch)
    return type(parts[0])(
        *(
            torch.cat(field) if isinstance(field[0], Tensor) else [v for part in field for v in part]
            for field in zip(*parts, strict=True)
        )
    )


def benchmark_volume(
    dense: MBDLNetwork, pruned: MBDLNetwork, volume: Sample, settings: BenchmarkSettings
) -> dict[str, Any]:
    """Dense vs pruned on all of a volume's slices in one forward (throughput), with half the repetitions of
    the per-slice benchmark (at least 5): a volume forward costs as many slices as it has."""
    timing = replace(settings, repeats=max(5, settings.repeats // 2), warmup=max(1, min(settings.warmup, 2)))
    seconds = time_forwards({"dense": dense, "pruned": pruned}, volume, timing, as_given=True)
    return {
        "fname": volume.fname[0],
        "slices": int(volume.y.shape[0]),
        "repeats": timing.repeats,
        "dense_ms": seconds["dense"] * 1000,
        "pruned_ms": seconds["pruned"] * 1000,
        "speedup": seconds["dense"] / seconds["pruned"],
    }


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


def _forward_mac_parts(network: MBDLNetwork, y: Tensor, physics: Physics) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """:func:`forward_mac_parts` and the input each prior received first in that forward (one forward counts
    the FFTs, the prior calls and their inputs)."""
    ffts = (torch.ops.aten._fft_c2c, torch.ops.aten._fft_r2c, torch.ops.aten._fft_c2r)
    counter = FlopCounterMode(display=False, custom_mapping={op: _fft_flops for op in ffts})
    priors = network.priors()
    calls, inputs = dict.fromkeys(priors, 0), {}

    def seen(name: str, args: tuple[Tensor, ...]) -> None:
        calls[name] += 1
        inputs.setdefault(name, args[0].detach().clone())

    hooks = [
        prior.register_forward_pre_hook(lambda _m, args, name=name: seen(name, args)) for name, prior in priors.items()
    ]
    try:
        with counter, torch.no_grad():
            network(y, physics)
    finally:
        for hook in hooks:
            hook.remove()
    fft_macs = sum(n for op, n in counter.get_flop_counts()["Global"].items() if op in ffts) // 2
    layers = count_macs(network, (y, physics)) * y.shape[0]
    per_call = {name: count_macs(priors[name], x) * x.shape[0] for name, x in inputs.items()}
    prior_macs = {name: macs * calls[name] for name, macs in per_call.items()}
    parts = {
        "total": layers + fft_macs,
        "priors": prior_macs,
        "per_prior_call": per_call,
        "prior_calls": calls,
        "ffts": fft_macs,
        "other_layers": max(0, layers - sum(prior_macs.values())),
    }
    return parts, inputs


def forward_mac_parts(network: MBDLNetwork, y: Tensor, physics: Physics) -> dict[str, Any]:
    """MACs of one whole forward, split where a speed-up can come from: each prior (MACs per call x the calls
    this forward made, so a DEQ's solver iterations count), the FFTs of the physics, and the other layers."""
    return _forward_mac_parts(network, y, physics)[0]


def count_forward_macs(network: MBDLNetwork, y: Tensor, physics: Physics) -> int:
    """MACs of one whole forward: every module's layers (torch-pruning) + the FFTs (FlopCounterMode)."""
    return forward_mac_parts(network, y, physics)["total"]


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null: the profiler's C++ side (kineto) logs two lines there on every use,
    which would land in every benchmark's output."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Bytes ``fn`` allocates at most at one time beyond what was allocated before it (its activations and
    output; weights and inputs already in place are not counted), measured the same way for every network.

    CUDA: the caching allocator's ``max_memory_allocated`` above the bytes allocated before the call. CPU: the
    allocations and frees the c10 CPU allocator reports to the profiler (``profile_memory``), every one
    including those inside an operator, summed in time order; the peak of that running sum."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events, sizes = list(prof.profiler.kineto_results.experimental_event_tree()), []
    while events:
        event = events.pop()
        events.extend(event.children)
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            sizes.append((event.start_time_ns, event.extra_fields.alloc_size))
    live = peak = 0
    for _, size in sorted(sizes):
        live += size
        peak = max(peak, live)
    return peak


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
    parts, inputs = _forward_mac_parts(network, y, physics)
    return {
        "params": count_params(network),
        "prior_params": sum(count_params(p) for p in network.priors().values()),
        "macs_forward": parts.pop("total"),
        "macs_per_prior_call": parts.pop("per_prior_call"),
        "macs_parts": parts,
        "inputs": inputs,
    }


def speedup_cap(result: dict[str, Any]) -> dict[str, Any] | None:
    """What pruning left alone and the MAC speed-up it caps: the dense MACs of every part whose MACs pruning
    did not reduce (unpruned priors, FFTs, other layers), their share and ``total / untouched`` (the speed-up
    if the pruned priors cost nothing). None for a result without the parts (older benchmark.json files)."""
    dense, pruned = result["dense"].get("macs_parts"), result["pruned"].get("macs_parts")
    if dense is None or pruned is None:
        return None
    untouched = {
        f"unpruned prior {name}": macs
        for name, macs in dense["priors"].items()
        if pruned["priors"].get(name, macs) >= macs
    }
    untouched |= {"FFTs": dense["ffts"], "other layers": dense["other_layers"]}
    untouched = {name: macs for name, macs in untouched.items() if macs}
    total, left = result["dense"]["macs_forward"], sum(untouched.values())
    return {
        "untouched_macs": untouched,
        "untouched_share": left / total,
        "mac_cap": total / left if left else math.inf,
    }


def speedup_cap_line(result: dict[str, Any]) -> str:
    """One line on where the speed-up is capped, for the benchmark table and the run's summary."""
    cap = speedup_cap(result)
    if cap is None:
        return ""
    total = result["dense"]["macs_forward"]
    parts = ", ".join(
        f"{name} {macs / total:.0%}" for name, macs in sorted(cap["untouched_macs"].items(), key=lambda kv: -kv[1])
    )
    bound = f"{cap['mac_cap']:.2f}x" if math.isfinite(cap["mac_cap"]) else "no limit"
    return (
        f"Speed-up capped at {bound} in MACs by what pruning leaves alone: {cap['untouched_share']:.0%} of the "
        f"dense MACs ({parts or 'nothing'})."
    )


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


def _place(
    networks: dict[str, MBDLNetwork], batch: Sample, settings: BenchmarkSettings, as_given: bool = False
) -> _Timed:
    """``batch`` on the device (its first slice ``settings.slices`` times, or ``as_given``) and each network
    there in its layout."""
    device = settings.torch_device()
    kept = settings.keep_allocations and device.type == "cpu" and keep_malloc_allocations()
    batch = batch if as_given else repeat_first_slice(batch, settings.slices)
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


def time_forwards(
    networks: dict[str, MBDLNetwork], batch: Sample, settings: BenchmarkSettings, as_given: bool = False
) -> dict[str, float]:
    """Median seconds per whole forward of each network, timed as :func:`benchmark_pair` times a pair (same
    input, layouts, runtime; all interleaved): for choices that compare more than two networks, and for whole
    volumes (``as_given``: ``batch`` itself, not its first slice repeated)."""
    with _timing_flags(settings):
        placed = _place(networks, batch, settings, as_given)
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
            stats = nets[name].solver_stats
            if stats:
                iterations[name].append(int(stats["iterations"]))

        forward = _interleaved_medians({n: (lambda n=n: run_forward(n)) for n in nets}, settings, device)

        def run_priors(name: str) -> tuple[Tensor, ...]:
            priors = nets[name].priors()
            return tuple(priors[prior_name](x) for prior_name, x in profiles[name]["inputs"].items())

        priors_only = {n: prepare_runtime(lambda n=n: run_priors(n), runtime, device)[0] for n in nets}
        prior_time = _interleaved_medians(priors_only, settings, device)
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
            result[name]["solver_iterations"] = _spread(iterations[name])
    result["memory_ratio"] = peaks["dense"] / max(peaks["pruned"], 1)
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
    if "peak_forward_bytes" in d:
        rows += [
            (
                "peak memory per forward (eager; activations and output), MiB",
                f"{d['peak_forward_bytes'] / 2**20:.1f}",
                f"{p['peak_forward_bytes'] / 2**20:.1f}",
                f"{p['peak_forward_bytes'] / max(d['peak_forward_bytes'], 1):.1%}",
            ),
            (
                "weights, MiB",
                f"{d['weight_bytes'] / 2**20:.2f}",
                f"{p['weight_bytes'] / 2**20:.2f}",
                f"{p['weight_bytes'] / d['weight_bytes']:.1%}",
            ),
        ]
    for name in d["macs_per_prior_call"]:
        a, b = d["macs_per_prior_call"][name], p["macs_per_prior_call"][name]
        rows.append((f"MACs per call, {name}", f"{a:,}", f"{b:,}", f"{a / b:.2f}x"))
    if volume := result.get("volume"):
        rows.insert(
            1,
            (
                f"whole test volume ({volume['slices']} slices in one forward, {volume['repeats']} repetitions), "
                "median ms",
                f"{volume['dense_ms']:.1f}",
                f"{volume['pruned_ms']:.1f}",
                f"{volume['speedup']:.2f}x",
            ),
        )
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
    if cap := speedup_cap_line(result):
        lines.append(cap)
    return "\n".join(lines) + "\n"
