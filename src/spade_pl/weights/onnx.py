"""ONNX of the priors (``export.formats=[onnx]``), run by ONNX Runtime: the dynamo exporter's graph of each prior
on the input it receives, for runtimes other than PyTorch's.

Only the priors: ONNX's DFT exports, but ONNX Runtime's CPU DFT is far slower than torch's FFT, so the FFTs and
data consistency of an MRI network stay in torch around the exported priors (docs: Benchmark and export). Needs
the ``deploy`` extra (``pip install 'spade-pl[deploy]'``: onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn

from spade_pl.weights.artifacts import ArtifactFormat
from spade_pl.weights.exported_program import exported_program, quiet


def export_onnx(module: nn.Module, inputs: tuple[Tensor, ...]) -> bytes:
    """The ONNX model of ``module`` on ``inputs`` (shapes fixed), as a file's bytes."""
    # (the exporter also warns that torchvision's operators are not registered: spade-pl never uses them)
    with quiet("onnx_ir", "onnxscript", "torch.onnx", level=logging.ERROR):
        program = torch.onnx.export(exported_program(module, inputs), inputs, dynamo=True, verbose=False)
    return program.model_proto.SerializeToString()


def load(blob: bytes) -> Callable[..., Tensor]:
    """``blob`` in ONNX Runtime (``InferenceSession``) on the CPU as a call on tensors, with torch's thread count and no
    spinning threads (they would slow the torch operations that run between its calls)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    runner = onnxruntime.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in runner.get_inputs()]

    def run(*inputs: Tensor) -> Tensor:
        feeds = {name: t.detach().cpu().contiguous().numpy() for name, t in zip(names, inputs, strict=True)}
        return torch.from_numpy(runner.run(None, feeds)[0]).to(inputs[0].device)

    return run


ONNX = ArtifactFormat(
    "onnx",
    ".onnx",
    "ONNX (onnxruntime.InferenceSession(path))",
    export_onnx,
    load,
    priors_only=True,
    requires=("onnx", "onnxscript", "onnxruntime"),
)
