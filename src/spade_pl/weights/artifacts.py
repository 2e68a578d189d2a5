"""``stage=export``'s runnable files: a dense or pruned network (or, for a DEQ, each prior) captured in a format that
runs without spade-pl, checked against the checkpoint before it is written.

(The weight files the stage writes beside them are :mod:`spade_pl.weights.export`'.)

``network(y, physics)`` takes a physics object; an artifact can only take tensors. An unrolled network is therefore
captured as ``network(y, *tensors)``, where ``tensors`` are the physics' tensor fields (MRI: ``mask``, ``maps``; SR:
``kernel``, ``mask``) and its integer fields (MRI: ``num_low_frequencies``) are constants of the acquisition. An
artifact is specialised to the example's input shapes and acquisition (size, coils, centre lines); it is checked on
a second input of the same acquisition before it is written.

A fixed-point network (DEQ) runs its solver until the data converges, a data-dependent number of iterations that
no capture keeps: its priors are captured instead, each on the input it receives in the example's forward, and
the solver stays Python that calls them (docs: Benchmark and export).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spade_pl.benchmark.runtime import TOLERANCE, constants_fixed
from spade_pl.core.atomic_io import atomic_torch_save, atomic_write
from spade_pl.core.errors import require
from spade_pl.models.base import MBDLNetwork, recorded_prior_calls
from spade_pl.physics.base import Physics
from spade_pl.pruning.counting import count_params


class TensorInputs(nn.Module):
    """``network(y, physics)`` as ``network(y, *physics tensors)`` with the physics' other fields fixed."""

    def __init__(self, network: nn.Module, template: Physics):
        super().__init__()
        self.network = network
        self.template = constants_fixed(template)
        self.fields = [f.name for f in dataclasses.fields(self.template) if isinstance(self.field(f.name), Tensor)]

    def field(self, name: str) -> Any:
        return getattr(self.template, name)

    def inputs(self, y: Tensor, physics: Physics) -> tuple[Tensor, ...]:
        return (y, *(getattr(physics, name) for name in self.fields))

    def forward(self, y: Tensor, *tensors: Tensor) -> Tensor:
        return self.network(y, dataclasses.replace(self.template, **dict(zip(self.fields, tensors, strict=True))))


@dataclass(frozen=True)
class ArtifactFormat:
    """A way to capture a module: its ``export.formats`` name, file suffix, how to capture a module on example
    inputs into the file's bytes, and how to load those bytes back into a callable (how a user loads it)."""

    name: str
    suffix: str
    title: str
    capture: Callable[[nn.Module, tuple[Tensor, ...]], bytes]
    load: Callable[[bytes], Callable[..., Tensor]]
    priors_only: bool = False  # captures the priors of every network, not a whole unrolled one
    requires: tuple[str, ...] = ()  # modules beyond spade-pl's own dependencies (the deploy extra)


@dataclass
class Capture:
    """One module to capture (the network, or one prior of an iterative network) with its inputs."""

    stem: str  # file name without suffix: model, or the prior's name
    module: nn.Module
    names: list[str]  # the inputs' names, in order
    example: tuple[Tensor, ...]
    check: tuple[Tensor, ...]
    constants: dict[str, int] = dataclasses.field(default_factory=dict)  # the acquisition's fixed integer fields


def captures(
    network: MBDLNetwork, example: tuple[Tensor, Physics], check: tuple[Tensor, Physics], priors_only: bool = False
) -> list[Capture]:
    """What is captured: the whole network (``model``), or each prior on its input (an iterative network's, or
    every network's with ``priors_only``)."""
    if not (network.iterative or priors_only):
        wrapper = TensorInputs(network.eval(), example[1]).eval()
        template = wrapper.template
        constants = {
            f.name: getattr(template, f.name)
            for f in dataclasses.fields(template)
            if isinstance(getattr(template, f.name), int)
        }
        inputs = (wrapper.inputs(*example), wrapper.inputs(*check))
        return [Capture("model", wrapper, ["y", *wrapper.fields], *inputs, constants)]
    recorded = []
    for y, physics in (example, check):
        with torch.no_grad(), recorded_prior_calls(network.eval()) as calls:
            network(y, physics)
        recorded.append(calls.inputs)
    priors = network.priors()
    return [Capture(name, priors[name], ["x"], (x,), (recorded[1][name],)) for name, x in recorded[0].items()]


def export_artifact(
    network: MBDLNetwork,
    form: ArtifactFormat,
    example: tuple[Tensor, Physics],
    check: tuple[Tensor, Physics],
    folder: Path,
    layout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Capture ``network`` (or its priors) in ``form`` on ``example``, load each artifact back and compare it with
    the checkpoint on ``example`` and ``check`` (same acquisition, other content), then write ``<stem><suffix>``
    and ``<stem>_example.pt`` (``names``: the inputs in order, each input by name, and the expected ``output``).
    Returns the record for export.json. ``layout``: the priors' memory format the network was put in (the capture
    keeps it). An artifact further than ``TOLERANCE`` from the checkpoint is an input error; nothing is written."""
    written: dict[str, Any] = {}
    parts = captures(network, example, check, form.priors_only)
    for part in parts:
        with torch.no_grad():
            blob = form.capture(part.module, part.example)
            loaded = form.load(blob)
            errors = [float((loaded(*x) - part.module(*x)).abs().max()) for x in (part.example, part.check)]
            expected = part.module(*part.example)
        require(
            max(errors) <= TOLERANCE,
            f"the {form.title} artifact of {part.stem} differs from the checkpoint by {max(errors):.2e} "
            f"(> {TOLERANCE:g}); not written",
        )
        written[part.stem] = (part, blob, errors, expected)
    folder.mkdir(parents=True, exist_ok=True)
    artifacts = {}
    for stem, (part, blob, errors, expected) in written.items():
        atomic_write(folder / f"{stem}{form.suffix}", lambda f, blob=blob: f.write(blob))
        example_file = {"names": part.names, **dict(zip(part.names, part.example, strict=True)), "output": expected}
        atomic_torch_save(folder / f"{stem}_example.pt", example_file)
        artifacts[stem] = {
            "artifact": str(folder / f"{stem}{form.suffix}"),
            "example": str(folder / f"{stem}_example.pt"),
            "inputs": {
                n: {"shape": list(t.shape), "dtype": str(t.dtype)}
                for n, t in zip(part.names, part.example, strict=True)
            },
            "output": {"shape": list(expected.shape), "dtype": str(expected.dtype)},
            "parameters": count_params(part.module),
            "max_abs_error": {"example": errors[0], "check": errors[1]},
        }
    record: dict[str, Any] = {"format": form.title, "artifacts": artifacts, "memory_format": layout or {}}
    if network.iterative:
        record["not_captured"] = "its fixed-point solver, Python that calls the priors (docs: Benchmark and export)"
    elif form.priors_only:
        record["not_captured"] = "the steps between the priors (FFTs, data consistency), torch around them"
    else:
        record["constants"] = parts[0].constants
    return record
