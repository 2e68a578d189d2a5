"""What a benchmark times and how: repetitions, threads, device, input, memory layout and runtime."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spade_pl.benchmark.runtime import CHOICES, RUNTIMES
from spade_pl.core.errors import require, require_int


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
    memory_format: str = "auto"  # the priors' layout (spade_pl.benchmark.runtime): auto = the faster, per network
    runtime: str = "auto"  # eager | cuda_graph (spade_pl.benchmark.runtime); auto = cuda_graph on a GPU (unrolled nets)
    volume: bool = True  # also time whole test volumes per forward (throughput), in stage=spade and benchmark
    volumes: int | None = None  # how many test volumes the per-volume line times (their median); None: all
    warm_start: bool = False  # iterative networks' volumes: slice by slice in order, each from the slice before
    runtimes: tuple[str, ...] = ()  # the runtime table (spade_pl.weights.runtimes): these runtimes beside eager

    def __post_init__(self) -> None:
        object.__setattr__(self, "runtimes", tuple(self.runtimes))  # a list from the config
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
        if self.volumes is not None:
            require_int("benchmark.volumes", self.volumes, 1)
        if self.size is not None:
            require_int("benchmark.size", self.size, 8)

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)
