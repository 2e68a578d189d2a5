"""The inference path: each network's priors run in the memory format measured fastest for them here.

On this project's CPUs (oneDNN), the layout decides how close a convolution gets to its MAC rate, and no
layout wins everywhere: a fastmri U-Net on a 128 x 128 slice (2 threads) takes 11.8 ms with 8 channels in
PyTorch's default NCHW layout and 7.4 ms channels-last (NHWC), but 29.8 ms vs 46.1 ms with 32 channels.
Pruned priors are exactly the narrow ones, so timing dense and pruned in one fixed layout would understate
what pruning buys, or overstate it. ``auto`` therefore times both layouts for each network (dense and pruned
alike: fair) and keeps the faster; the outputs of the two layouts are compared and the difference reported.
The layout is a property of the weights (``module.to(memory_format=...)``): convolutions follow their
weights, so nothing else in the network changes, and an exported trace keeps it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.base import Physics

MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
CHOICES = ("auto", *MEMORY_FORMATS)


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
