"""The runtime table (``benchmark.runtimes``): the dense and the pruned network each deployed in every listed
runtime, timed in one process on one input, so a user deploying the pruned network sees which runtime makes it
fastest and by how much against the dense network in eager PyTorch.

Runtimes, and what each one runs:

- ``eager``: the network as it is (the reference every other runtime's output is compared with).
- ``compile``: ``torch.compile`` (inductor), compiled on the first call (counted as preparation).
- ``aoti``: the AOTInductor package that ``export.formats=[aoti]`` writes, loaded back.
- ``onnxruntime``: each prior exported to ONNX and run by ONNX Runtime; the FFTs and data consistency stay in torch
  (ONNX Runtime's CPU DFT is far slower than torch's FFT). Needs the ``deploy`` extra.
- ``cuda_graph``: the whole forward recorded once and replayed (a GPU, unrolled networks).

``compile`` and ``aoti`` take an unrolled network whole (at the input's fixed acquisition); a DEQ's solver stops on
the data, so there they take its priors and the solver stays Python, as in ``stage=export``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from spade_pl.benchmark.runtime import capture_cuda_graph, relative_difference, set_memory_format
from spade_pl.benchmark.settings import BenchmarkSettings
from spade_pl.benchmark.timing import interleaved_medians, place_networks, timing_flags
from spade_pl.core.errors import require, require_installed
from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.base import Physics
from spade_pl.physics.sample import Sample
from spade_pl.weights.aoti import AOTI
from spade_pl.weights.artifacts import ArtifactFormat, captures
from spade_pl.weights.onnx import ONNX

log = logging.getLogger(__name__)

#: a runtime whose output is further than this (relative) from eager's is reported but never named the fastest
AGREEMENT = 1e-3


def _compiled(module: nn.Module, _inputs: tuple[Tensor, ...]) -> Callable[..., Tensor]:
    # the bound forward, not the module: a prior's forward is replaced by the result, which must not call itself
    return torch.compile(module.forward, dynamic=False)


#: a pruned network's U-Nets each have their own widths: one compiled version per cascade (dynamo's default limit, 8,
#: would leave the rest eager)
COMPILED_VERSIONS = 64


def _loaded(form: ArtifactFormat) -> Callable[[nn.Module, tuple[Tensor, ...]], Callable[..., Tensor]]:
    return lambda module, inputs: form.load(form.capture(module, inputs))


#: runtime -> (how a captured part is deployed, whether only the priors are); eager and cuda_graph run the network
DEPLOYERS: dict[str, tuple[Callable[[nn.Module, tuple[Tensor, ...]], Callable[..., Tensor]], bool]] = {
    "compile": (_compiled, False),
    "aoti": (_loaded(AOTI), False),
    "onnxruntime": (_loaded(ONNX), True),
}
RUNTIMES = ("eager", *DEPLOYERS, "cuda_graph")


def check_runtimes(settings: BenchmarkSettings) -> None:
    """Each listed runtime is known, can run on the device, and has its dependencies; else one line."""
    listed = list(settings.runtimes)
    unknown = [name for name in listed if name not in RUNTIMES]
    require(
        not unknown, f"benchmark.runtimes={listed} names unknown runtime(s) {unknown}; allowed: {', '.join(RUNTIMES)}"
    )
    if "cuda_graph" in listed:
        require(
            settings.torch_device().type == "cuda",
            f"benchmark.runtimes=[cuda_graph] needs a CUDA device, not {settings.torch_device()}",
        )
    if "onnxruntime" in listed:
        require_installed("benchmark.runtimes=[onnxruntime]", ONNX.requires, "deploy")


def deploy(network: MBDLNetwork, y: Tensor, physics: Physics, runtime: str) -> tuple[Callable[[], Tensor], float]:
    """``network``'s forward on ``(y, physics)`` in ``runtime``, prepared (exported, compiled, captured and called
    once); returns the call and the seconds the preparation took (eager: none, 0). ``network`` itself is left as it
    is."""
    call: Callable[[], Tensor] = lambda: network(y, physics)  # noqa: E731
    if runtime == "eager":
        return call, 0.0
    start = time.perf_counter()
    if runtime == "cuda_graph":
        require(not network.iterative, f"runtime=cuda_graph cannot capture {type(network).__name__}'s solver")
        call = capture_cuda_graph(call, y.device)  # type: ignore[assignment]
    else:
        make, priors_only = DEPLOYERS[runtime]
        copied = copy.deepcopy(network)
        parts = captures(copied, (y, physics), (y, physics), priors_only)
        if parts[0].stem == "model":  # the whole unrolled network, on tensors
            whole, inputs = make(parts[0].module, parts[0].example), parts[0].example
            call = lambda: whole(*inputs)  # noqa: E731
        else:
            for part in parts:
                part.module.forward = make(part.module, part.example)
            call = lambda: copied(y, physics)  # noqa: E731
    with torch._dynamo.config.patch(recompile_limit=COMPILED_VERSIONS):
        call()  # torch.compile compiles here, on the first call, every version the forward needs
    if y.device.type == "cuda":
        torch.cuda.synchronize(y.device)
    return call, time.perf_counter() - start


def runtime_table(
    dense: MBDLNetwork, pruned: MBDLNetwork, batch: Sample, settings: BenchmarkSettings, layouts: dict[str, str]
) -> dict[str, Any]:
    """Dense and pruned in eager and in each of ``settings.runtimes`` on ``batch``'s first slice, each network in
    its layout (``layouts``: what the benchmark chose), all calls interleaved; per runtime the median ms of each
    network, the speed-ups, the preparation seconds and the largest relative output difference from eager, and the
    fastest pruned deployment."""
    runtimes = list(dict.fromkeys(["eager", *settings.runtimes]))
    as_chosen = dataclasses.replace(settings, runtime="eager", memory_format="contiguous")
    with timing_flags(settings) as kept, torch.no_grad():
        placed = place_networks({"dense": dense, "pruned": pruned}, batch, as_chosen, kept)
        for name, net in placed.nets.items():
            set_memory_format(net, layouts[name])
        reference = {name: net(placed.y, placed.physics) for name, net in placed.nets.items()}
        calls, prepare_s, difference = {}, {}, {}
        for runtime in runtimes:
            for name, net in placed.nets.items():
                log.info("[benchmark] preparing the %s network in %s", name, runtime)
                calls[runtime, name], prepare_s[runtime, name] = deploy(net, placed.y, placed.physics, runtime)
                difference[runtime, name] = relative_difference(calls[runtime, name](), reference[name])
        log.info("[benchmark] timing %d runtimes, dense and pruned, %d repetitions", len(runtimes), settings.repeats)
        seconds = interleaved_medians(calls, settings, placed.device)
    dense_eager = seconds["eager", "dense"]
    rows = [
        {
            "runtime": runtime,
            "dense_ms": seconds[runtime, "dense"] * 1000,
            "pruned_ms": seconds[runtime, "pruned"] * 1000,
            "speedup": seconds[runtime, "dense"] / seconds[runtime, "pruned"],
            "pruned_vs_dense_eager": dense_eager / seconds[runtime, "pruned"],
            "prepare_s": {name: prepare_s[runtime, name] for name in placed.nets},
            "relative_difference": max(difference[runtime, name] for name in placed.nets),
        }
        for runtime in runtimes
    ]
    agreeing = [row for row in rows if row["relative_difference"] <= AGREEMENT]
    fastest = min(agreeing, key=lambda row: row["pruned_ms"])
    differing = [row["runtime"] for row in rows if row not in agreeing]
    return {
        "threads": settings.threads,
        "repeats": settings.repeats,
        "input_shape": list(placed.y.shape),
        "rows": rows,
        "fastest_pruned": {k: fastest[k] for k in ("runtime", "pruned_ms", "pruned_vs_dense_eager")},
        "agreement": AGREEMENT,
        "not_considered": differing,  # output further than AGREEMENT from eager's
    }
