"""TorchScript, for loaders that still need it (``export.formats=[torchscript]``): ``torch.jit.trace`` of the
network, ``torch.jit.load`` to run it. PyTorch deprecates TorchScript in favour of ``torch.export``
(:mod:`spade_pl.weights.exported_program`), the default format."""

from __future__ import annotations

import io

import torch
from torch import Tensor, nn

from spade_pl.weights.artifacts import ArtifactFormat


def trace(module: nn.Module, inputs: tuple[Tensor, ...]) -> bytes:
    """The trace of ``module`` on ``inputs`` as the bytes of a ``.pt`` file."""
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.trace(module, inputs, check_trace=False), buffer)
    return buffer.getvalue()


def load(blob: bytes) -> torch.jit.ScriptModule:
    return torch.jit.load(io.BytesIO(blob))


TORCHSCRIPT = ArtifactFormat("torchscript", ".pt", "TorchScript (torch.jit.load)", trace, load)
