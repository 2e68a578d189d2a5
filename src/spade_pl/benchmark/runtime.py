"""The inference path: the priors' memory layout measured fastest here, and the runtime that runs the forward.

Layout.
On this project's CPUs (oneDNN), the layout decides how close a convolution gets to its MAC rate, and no
layout wins everywhere: a fastmri U-Net on a 128 x 128 slice (2 threads) takes 11.8 ms with 8 channels in
PyTorch's default NCHW layout and 7.4 ms channels-last (NHWC), but 29.8 ms vs 46.1 ms with 32 channels.
Pruned priors are exactly the narrow ones, so timing dense and pruned in one fixed layout would understate
what pruning buys, or overstate it. ``auto`` therefore times both layouts for each network (dense and pruned
alike: fair) and keeps the faster; the outputs of the two layouts are compared and the difference reported.
The layout is a property of the weights (``module.to(memory_format=...)``): convolutions follow their
weights, so nothing else in the network changes, and an exported trace keeps it.

Runtime. A one-slice forward on a GPU is launch-bound: E2E-VarNet issues hundreds of small kernels, and a
pruned network's kernels shrink while their launch cost does not (experiments/LOG.md: eager on a GPU gives a
fraction of the MAC bound).
``cuda_graph`` records the whole forward once and replays it as one launch, so time follows the kernels'
work. It is prepared before any timing (the capture time is reported on its own) and its output checked
against eager's. ``torch.compile`` and the exported formats move the output by more than ``TOLERANCE`` (about
2e-5 relative on the default E2E-VarNet); they are timed beside eager in the runtime table
(:mod:`spade_pl.weights.runtimes`), which reports how far each one's output moved. A CUDA graph replays fixed
input buffers, fixed shapes and a fixed number of iterations, so it applies to unrolled networks at a fixed
acquisition: a DEQ's solver reads its residual on the host every iteration and is refused.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from spade_pl.core.errors import RunFailure, require
from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.base import Physics

MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
CHOICES = ("auto", *MEMORY_FORMATS)
#: auto = cuda_graph for an unrolled network on a GPU, else eager
RUNTIMES = ("auto", "eager", "cuda_graph")
#: the largest output difference from eager a runtime (relative) or an exported artifact (absolute) may show
TOLERANCE = 1e-5


def set_memory_format(network: MBDLNetwork, name: str) -> MBDLNetwork:
    """Put every prior's weights in the named layout (in place); the rest of the network is untouched."""
    for prior in network.priors().values():
        prior.to(memory_format=MEMORY_FORMATS[name])
    return network


def relative_difference(a: Tensor, b: Tensor) -> float:
    """``max |a - b| / max |b|``: how far two layouts' outputs are apart, on the output's own scale."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(torch.finfo(b.dtype).tiny))


def choose_memory_format(
    network: MBDLNetwork,
    y: Tensor,
    physics: Physics,
    choice: str,
    time_calls: Callable[[dict[str, Callable[[], Any]]], dict[str, float]],
) -> dict[str, Any]:
    """Set ``network``'s layout: ``choice``, or for ``auto`` the one ``time_calls`` measures fastest.

    Returns what was chosen, the seconds per forward of each candidate (``auto``) and the relative output
    difference between the layouts (``auto``)."""
    if choice != "auto":
        set_memory_format(network, choice)
        return {"chosen": choice}
    candidates = {name: set_memory_format(copy.deepcopy(network), name) for name in MEMORY_FORMATS}
    seconds = time_calls({name: (lambda net=net: net(y, physics)) for name, net in candidates.items()})
    outputs = [candidates[name](y, physics) for name in MEMORY_FORMATS]
    chosen = min(seconds, key=seconds.__getitem__)
    set_memory_format(network, chosen)
    return {
        "chosen": chosen,
        "candidates_ms": {name: s * 1000 for name, s in seconds.items()},
        "relative_difference": relative_difference(*outputs),
    }


def constants_fixed(physics: Physics) -> Physics:
    """Integer tensor fields equal across the batch (e.g. ``num_low_frequencies``) as Python ints, after the
    physics' own :meth:`~spade_pl.physics.base.Physics.at_fixed_acquisition`: what a forward at a fixed acquisition
    (an exported program, a CUDA graph) needs instead of reading a device tensor."""
    physics = physics.at_fixed_acquisition()
    constants = {}
    for f in dataclasses.fields(physics):
        value = getattr(physics, f.name)
        if isinstance(value, Tensor) and not value.is_floating_point() and value.dtype != torch.bool:
            require(
                bool((value == value.flatten()[0]).all()),
                f"physics field {f.name}={value.flatten().tolist()} differs across the batch; a fixed "
                f"acquisition (export, CUDA graph) takes one acquisition at a time",
            )
            constants[f.name] = int(value.flatten()[0])
    return dataclasses.replace(physics, **constants)


def resolve_runtime(choice: str, network: MBDLNetwork, device: torch.device) -> str:
    """``choice`` for ``network`` on ``device``, ``auto`` resolved; a clear error where it cannot run."""
    require(choice in RUNTIMES, f"runtime={choice!r} is unknown; allowed: {', '.join(RUNTIMES)}")
    iterative = network.iterative  # a fixed-point solver: data-dependent iteration count
    if choice == "auto":
        return "cuda_graph" if device.type == "cuda" and not iterative else "eager"
    if choice == "cuda_graph":
        require(device.type == "cuda", f"runtime=cuda_graph needs a CUDA device, not {device}; allowed here: eager")
        require(
            not iterative,
            f"runtime=cuda_graph cannot capture {type(network).__name__}: its solver decides on the host when "
            f"to stop; allowed: eager",
        )
    return choice


Outputs = Tensor | tuple[Tensor, ...]


def capture_cuda_graph(forward: Callable[[], Outputs], device: torch.device, warmup: int = 3) -> Callable[[], Outputs]:
    """``forward`` recorded as a CUDA graph (after ``warmup`` runs on a side stream, as PyTorch requires);
    the returned call replays it and returns its output buffers, which every replay overwrites."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            forward()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = forward()

    def replay() -> Outputs:
        graph.replay()
        return output

    return replay


def _flat(outputs: Outputs) -> Tensor:
    """One tensor holding every output (a copy: a CUDA graph overwrites its output buffers on replay)."""
    return torch.cat([t.flatten() for t in (outputs if isinstance(outputs, tuple) else (outputs,))])


def prepare_runtime(
    forward: Callable[[], Outputs], runtime: str, device: torch.device
) -> tuple[Callable[[], Outputs], dict[str, Any]]:
    """``forward`` (a call on fixed inputs, under ``torch.no_grad``) in ``runtime`` (resolved, see
    :func:`resolve_runtime`), prepared (captured). Returns the call and what to report: the runtime, the
    seconds its preparation took (never inside a timing) and the relative difference of its output from
    eager's, which must be within ``TOLERANCE``. Eager is the reference itself: returned as it is."""
    if runtime == "eager":
        return forward, {"runtime": runtime}
    reference = _flat(forward())
    start = time.perf_counter()
    call = capture_cuda_graph(forward, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    difference = relative_difference(_flat(call()), reference)
    if difference > TOLERANCE:
        raise RunFailure(
            f"runtime={runtime} changed the output by {difference:.1e} (relative) from eager; allowed: <= "
            f"{TOLERANCE:g}; time it with benchmark.runtime=eager"
        )
    return call, {"runtime": runtime, "prepare_s": seconds, "relative_difference": difference}
