"""AOTInductor, the compiled deployment of a ``torch.export`` program (``export.formats=[aoti]``): the program
compiled ahead of time to a shared library and packaged as a ``.pt2`` file, which
``torch._inductor.aoti_load_package(path)`` runs with torch alone (no Python graph, no compilation at load time).

Compiling needs a C++ compiler on the machine that exports (it takes seconds to minutes); loading does not.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn

from spade_pl.weights.artifacts import ArtifactFormat
from spade_pl.weights.exported_program import exported_program, quiet


def compile_package(module: nn.Module, inputs: tuple[Tensor, ...]) -> bytes:
    """The AOTInductor package of ``module``'s exported program on ``inputs``, as a file's bytes."""
    buffer = io.BytesIO()
    program = exported_program(module, inputs)
    with quiet("torch._inductor", level=logging.ERROR):  # (a warning per operator run through a fallback)
        torch._inductor.aoti_compile_and_package(program, package_path=buffer)
    return buffer.getvalue()


def load(blob: bytes) -> Callable[..., Tensor]:
    return torch._inductor.aoti_load_package(io.BytesIO(blob))


AOTI = ArtifactFormat(
    "aoti", "_aoti.pt2", "AOTInductor package (torch._inductor.aoti_load_package(path))", compile_package, load
)
