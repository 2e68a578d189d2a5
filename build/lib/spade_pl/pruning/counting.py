"""Counting what pruning changes: conv widths, parameters and multiply-accumulates (torch-pruning's counter).

torch-pruning's counter looks a module's rule up by its exact type in ``op_counter.MODULES_MAPPING``. Our
rules are registered there only while we count (:func:`counting_rules`) and taken out again, so importing
spade-pl changes nothing in a user's torch-pruning.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import Any

import torch_pruning as tp
from torch import Tensor, nn

op_counter = tp.utils.op_counter


def conv_widths(module: nn.Module, exclude: list[nn.Module]) -> list[int]:
    """Distinct output widths of the prunable conv layers, ascending (e.g. a U-Net's 18/36/72/144/288)."""
    skip = {id(m) for m in exclude}
    widths = {
        m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) and id(m) not in skip
    }
    return sorted(widths)


def count_params(module: nn.Module) -> int:
    """Parameters of ``module``: the one count every report and benchmark uses."""
    return sum(p.numel() for p in module.parameters())


def transposed_conv_macs(module: nn.modules.conv._ConvTransposeNd, inputs: tuple[Tensor, ...], output: Tensor) -> None:
    """MACs of a transposed convolution: every *input* position meets ``k^d · C_out / groups`` weights per input
    channel, plus one bias add per output element. torch-pruning's counter uses the convolution's rule with the
    output positions, which counts a stride-s transposed convolution s^d times (4x for fastMRI's U-Net's)."""
    x = inputs[0]
    weights_per_position = math.prod(module.kernel_size) * module.in_channels * (module.out_channels // module.groups)
    macs = weights_per_position * x.shape[0] * math.prod(x.shape[2:])
    if module.bias is not None:
        macs += output.numel()
    module.__flops__ += int(macs)


def count_macs(module: nn.Module, example: Any) -> int:
    """Multiply-accumulates per batch element of one call: torch-pruning's counter (conv/linear/norm layers; a
    convolution's bias adds count one each), with transposed convolutions counted right
    (:func:`transposed_conv_macs`)."""
    with warnings.catch_warnings(), counting_rules(module):
        warnings.filterwarnings("ignore", message="dropout2d: Received a 3D input")  # the counter probing fastmri
        macs, _ = tp.utils.count_ops_and_params(module, example)
    return int(macs)


@contextlib.contextmanager
def counting_rules(module: nn.Module) -> Iterator[None]:
    """Within: transposed convolutions counted by :func:`transposed_conv_macs`, and every module type under
    ``module`` that the counter does not know counted by the rule of its nearest known base class (a faster
    ``InstanceNorm2d`` subclass is the instance norm it computes). The mapping is restored on exit."""
    mapping = op_counter.MODULES_MAPPING
    added: dict[type, Any] = dict.fromkeys((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), None)
    for kind in {type(m) for m in module.modules()}:
        if kind not in mapping and kind not in added:
            base = next((b for b in kind.__mro__[1:] if b in mapping), None)
            if base is not None:
                added[kind] = mapping[base]
    rules = {kind: rule or transposed_conv_macs for kind, rule in added.items()}
    saved = {kind: mapping[kind] for kind in rules if kind in mapping}
    mapping.update(rules)
    try:
        yield
    finally:
        for kind in rules:
            if kind in saved:
                mapping[kind] = saved[kind]
            else:
                del mapping[kind]
