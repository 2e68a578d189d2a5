"""``stage=export``'s TorchScript file: a dense or pruned network as a trace that runs without spade-pl.

(The weight files the stage writes beside it are :mod:`spade_pl.weights.export`'.)

``network(y, physics)`` takes a physics object; an artifact can only take tensors. The export therefore traces
``network(y, *tensors)``, where ``tensors`` are the physics' tensor fields (MRI: ``mask``, ``maps``; SR:
``kernel``) and its integer fields (MRI: ``num_low_frequencies``) are constants of the acquisition.

TorchScript tracing (not ``torch.export``): fastMRI's sensitivity network sizes its centre crop from the mask's
values, which ``torch.export`` refuses as data-dependent; tracing records the crop of the example's acquisition.
An artifact is therefore specialised to the example's input shapes and acquisition (size, coils, centre
fraction, acceleration); it is checked on a second input of the same acquisition before it is written. A DEQ is
refused: its solver runs until the data converges, and a trace would freeze one input's iteration count.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spade_pl.benchmark.runtime import TOLERANCE, constants_fixed
from spade_pl.core.atomic_io import atomic_torch_save, atomic_write
from spade_pl.core.errors import require
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


def export_network(
    network: nn.Module,
    example: tuple[Tensor, Physics],
    check: tuple[Tensor, Physics],
    folder: Path,
    layout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Trace ``network`` on ``example``, verify the artifact on ``example`` and ``check`` (same acquisition,
    other content), write ``model.pt`` (TorchScript) and ``example.pt`` (``names``: the artifact's inputs in
    order, each input by name, and the expected ``output``); returns the record for export.json. ``layout``:
    the priors' memory format the network was put in (:func:`spade_pl.benchmark.timing.set_layout`; the trace keeps
    it). A network the trace cannot capture is an input error that says why."""
    require(
        not network.iterative,
        f"stage=export cannot trace {type(network).__name__}: its fixed-point solver runs a data-dependent "
        f"number of iterations; allowed: unrolled networks (e2e_varnet, varnet, du_sr)",
    )
    wrapper = TensorInputs(network.eval(), example[1]).eval()
    inputs, check_inputs = wrapper.inputs(*example), wrapper.inputs(*check)
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, inputs, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer)
        errors = [float((loaded(*x) - wrapper(*x)).abs().max()) for x in (inputs, check_inputs)]
        expected = wrapper(*inputs)
    require(
        max(errors) <= TOLERANCE,
        f"the traced artifact differs from the checkpoint by {max(errors):.2e} (> {TOLERANCE:g}); not written",
    )
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "model.pt", lambda f: f.write(buffer.getvalue()))
    names = ["y", *wrapper.fields]
    example_file = {"names": names, **dict(zip(names, inputs, strict=True)), "output": expected}
    atomic_torch_save(folder / "example.pt", example_file)
    record = {
        "artifact": str(folder / "model.pt"),
        "format": "TorchScript (torch.jit.load)",
        "inputs": {
            name: {"shape": list(t.shape), "dtype": str(t.dtype)} for name, t in zip(names, inputs, strict=True)
        },
        "output": {"shape": list(expected.shape), "dtype": str(expected.dtype)},
        "constants": {
            f.name: getattr(wrapper.template, f.name)
            for f in dataclasses.fields(wrapper.template)
            if isinstance(getattr(wrapper.template, f.name), int)
        },
        "parameters": count_params(network),
        "max_abs_error": {"example": errors[0], "check": errors[1]},
        "memory_format": layout or {"chosen": "contiguous"},
    }
    return record
