"""``torch.export``, the default export format: an ``ExportedProgram`` saved as ``.pt2``, which
``torch.export.load(path).module()`` runs with torch alone.

fastMRI's U-Net decides whether to pad an odd-sized skip connection with ``torch.sum(torch.tensor(padding)) != 0``,
a branch on a tensor's value that ``torch.export`` refuses as data-dependent (TorchScript's trace records it). The
padding is known from shapes alone, so the export runs fastMRI's U-Nets with the same computation written on
Python integers (:func:`fastmri_unets_on_shapes`); the captured graph is the same arithmetic.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import traceback
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from fastmri.models.unet import Unet
from torch import Tensor, nn

from spade_pl.core.errors import SpadeInputError
from spade_pl.weights.artifacts import ArtifactFormat


def unet_forward_on_shapes(self: Unet, image: Tensor) -> Tensor:
    """``fastmri.models.Unet.forward``, with its padding test on Python integers instead of a tensor."""
    stack = []
    output = image
    for layer in self.down_sample_layers:
        output = layer(output)
        stack.append(output)
        output = F.avg_pool2d(output, kernel_size=2, stride=2, padding=0)
    output = self.conv(output)
    for transpose_conv, conv in zip(self.up_transpose_conv, self.up_conv, strict=True):
        skip = stack.pop()
        output = transpose_conv(output)
        padding = [0, int(output.shape[-1] != skip.shape[-1]), 0, int(output.shape[-2] != skip.shape[-2])]
        if any(padding):  # reflect pad on the right/bottom for odd input sizes, as fastMRI does
            output = F.pad(output, padding, "reflect")
        output = conv(torch.cat([output, skip], dim=1))
    return output


@contextlib.contextmanager
def quiet(*loggers: str, level: int = logging.WARNING) -> Iterator[None]:
    """Within: the named loggers report from ``level`` up only (exporters and compilers log every pass they run,
    thousands of lines per network); their levels restored afterwards."""
    kept = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in kept.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def fastmri_unets_on_shapes() -> Iterator[None]:
    """Within: fastMRI's U-Nets run :func:`unet_forward_on_shapes`; restored afterwards."""
    original: Callable[..., Tensor] = Unet.forward
    Unet.forward = unet_forward_on_shapes
    try:
        yield
    finally:
        Unet.forward = original


def exported_program(module: nn.Module, inputs: tuple[Tensor, ...]) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``module`` on ``inputs`` (shapes fixed); a module that does not export (a branch
    on a tensor's value) is an input error naming the line that stopped it."""
    try:
        with fastmri_unets_on_shapes():
            program = torch.export.export(module, inputs, strict=False)
    except Exception as err:  # torch.export raises many types; the stage reports any of them as not written
        raise SpadeInputError(
            f"torch.export cannot capture {type(module).__name__}: {type(err).__name__} at {failing_line(err)} "
            f"(data-dependent control flow cannot be exported; export.formats=[torchscript] traces one path)"
        ) from None
    return program


def export(module: nn.Module, inputs: tuple[Tensor, ...]) -> bytes:
    """:func:`exported_program` as the bytes of a ``.pt2`` file."""
    buffer = io.BytesIO()
    torch.export.save(exported_program(module, inputs), buffer)
    return buffer.getvalue()


def failing_line(err: BaseException) -> str:
    """``file:line`` of the innermost frame of ``err``'s traceback outside torch: the user's code that stopped it."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f"{os.sep}torch{os.sep}" not in f.filename]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "an unknown line"


def load(blob: bytes) -> nn.Module:
    return torch.export.load(io.BytesIO(blob)).module()


PT2 = ArtifactFormat("pt2", ".pt2", "torch.export program (torch.export.load(path).module())", export, load)
