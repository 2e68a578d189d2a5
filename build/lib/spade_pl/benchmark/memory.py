"""Test-time memory: the peak one forward allocates, and glibc malloc told to keep its memory while timing.

On CPU, glibc's malloc hands every large buffer back to the OS after use, so each forward pays millions of
page faults (a third of a dense E2E-VarNet forward on a 2-core CPU: experiments/LOG.md).
:func:`malloc_keeps_allocations` tells malloc to keep its memory (what jemalloc/tcmalloc deployments do) while
the benchmark runs, dense and pruned alike, and gives glibc's defaults back afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch

#: mallopt parameters (glibc's malloc.h) and, per parameter, (kept while timing, glibc's documented default)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_KEEP_AND_DEFAULT = {
    _M_MMAP_MAX: (0, 65536),
    _M_TRIM_THRESHOLD: (1 << 30, 128 * 1024),
    _M_TOP_PAD: (1 << 30, 128 * 1024),
}


@contextlib.contextmanager
def malloc_keeps_allocations(wanted: bool = True) -> Iterator[bool]:
    """Within: glibc malloc never returns memory to the OS (no mmap, no trimming); yields whether that holds
    (False where the C library is not glibc, or not ``wanted``). glibc's defaults are set back on exit, so a
    process that goes on (a sweep's joblib worker, a notebook) allocates as it did before the benchmark."""
    libc = None
    if wanted:
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:
            libc = None
    if libc is None:
        yield False
        return
    kept = all(libc.mallopt(option, keep) == 1 for option, (keep, _) in _KEEP_AND_DEFAULT.items())
    try:
        yield kept
    finally:
        for option, (_, default) in _KEEP_AND_DEFAULT.items():
            libc.mallopt(option, default)


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
