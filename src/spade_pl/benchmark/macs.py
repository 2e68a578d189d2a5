"""MACs of a whole MBDL forward, split where a speed-up can come from, and what they cap.

Whole-forward MACs = the layers of every module (priors and unpruned parts such as the sensitivity net,
torch-pruning's counter) + the FFTs of the physics (5 N log2 N flops per transform = 2.5 N log2 N MACs); the
elementwise data-consistency arithmetic is not counted.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from spade_pl.models.base import MBDLNetwork, recorded_prior_calls
from spade_pl.physics.base import Physics
from spade_pl.pruning.counting import count_macs, count_params


def _fft_flops(x_shape, dim, *_args, out_shape=None, **_kwargs) -> int:
    n = math.prod(x_shape[d] for d in dim)
    return int(5 * (math.prod(x_shape) // n) * n * math.log2(max(n, 2)))


def forward_mac_parts_and_inputs(
    network: MBDLNetwork, y: Tensor, physics: Physics
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """:func:`forward_mac_parts` and the input each prior received first in that forward (one forward counts
    the FFTs, the prior calls and their inputs)."""
    ffts = (torch.ops.aten._fft_c2c, torch.ops.aten._fft_r2c, torch.ops.aten._fft_c2r)
    counter = FlopCounterMode(display=False, custom_mapping={op: _fft_flops for op in ffts})
    priors = network.priors()
    with counter, torch.no_grad(), recorded_prior_calls(network) as record:
        network(y, physics)
    calls, inputs = record.calls, record.inputs
    fft_macs = sum(n for op, n in counter.get_flop_counts()["Global"].items() if op in ffts) // 2
    layers = count_macs(network, (y, physics)) * y.shape[0]
    per_call = {name: count_macs(priors[name], x) * x.shape[0] for name, x in inputs.items()}
    prior_macs = {name: macs * calls[name] for name, macs in per_call.items()}
    parts = {
        "total": layers + fft_macs,
        "priors": prior_macs,
        "per_prior_call": per_call,
        "prior_calls": calls,
        "ffts": fft_macs,
        "other_layers": max(0, layers - sum(prior_macs.values())),
    }
    return parts, inputs


def forward_mac_parts(network: MBDLNetwork, y: Tensor, physics: Physics) -> dict[str, Any]:
    """MACs of one whole forward, split where a speed-up can come from: each prior (MACs per call x the calls
    this forward made, so a DEQ's solver iterations count), the FFTs of the physics, and the other layers."""
    return forward_mac_parts_and_inputs(network, y, physics)[0]


def count_forward_macs(network: MBDLNetwork, y: Tensor, physics: Physics) -> int:
    """MACs of one whole forward: every module's layers (torch-pruning) + the FFTs (FlopCounterMode)."""
    return forward_mac_parts(network, y, physics)["total"]


def profile(network: MBDLNetwork, y: Tensor, physics: Physics) -> dict[str, Any]:
    parts, inputs = forward_mac_parts_and_inputs(network, y, physics)
    return {
        "params": count_params(network),
        "prior_params": sum(count_params(p) for p in network.priors().values()),
        "macs_forward": parts.pop("total"),
        "macs_per_prior_call": parts.pop("per_prior_call"),
        "macs_parts": parts,
        "inputs": inputs,
    }


def speedup_cap(result: dict[str, Any]) -> dict[str, Any] | None:
    """What pruning left alone and the MAC speed-up it caps: the dense MACs of every part whose MACs pruning
    did not reduce (unpruned priors, FFTs, other layers), their share and ``total / untouched`` (the speed-up
    if the pruned priors cost nothing). None for a result without the parts (a benchmark.json written before
    they were recorded)."""
    dense, pruned = result["dense"].get("macs_parts"), result["pruned"].get("macs_parts")
    if dense is None or pruned is None:
        return None
    untouched = {  # a prior the pruned network lacks was removed with its stage (prune.depth)
        f"unpruned prior {name}": macs
        for name, macs in dense["priors"].items()
        if pruned["priors"].get(name, 0) >= macs
    }
    untouched |= {  # fewer when depth pruning removed stages with their FFTs and layers
        name: dense[key]
        for name, key in (("FFTs", "ffts"), ("other layers", "other_layers"))
        if pruned[key] >= dense[key]
    }
    untouched = {name: macs for name, macs in untouched.items() if macs}
    total, left = result["dense"]["macs_forward"], sum(untouched.values())
    return {
        "untouched_macs": untouched,
        "untouched_share": left / total,
        "mac_cap": total / left if left else math.inf,
    }


def speedup_cap_line(result: dict[str, Any]) -> str:
    """One line on where the speed-up is capped, for the benchmark table and the run's summary."""
    cap = speedup_cap(result)
    if cap is None:
        return ""
    total = result["dense"]["macs_forward"]
    parts = ", ".join(
        f"{name} {macs / total:.0%}" for name, macs in sorted(cap["untouched_macs"].items(), key=lambda kv: -kv[1])
    )
    bound = f"{cap['mac_cap']:.2f}x" if math.isfinite(cap["mac_cap"]) else "no limit"
    return (
        f"Speed-up capped at {bound} in MACs by what pruning leaves alone: {cap['untouched_share']:.0%} of the "
        f"dense MACs ({parts or 'nothing'})."
    )
