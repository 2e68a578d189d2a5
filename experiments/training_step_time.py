"""Training-step time of the default E2E-VarNet on this CPU, under the two rules for channels-last instance norms.

    python experiments/training_step_time.py [hydra overrides]

fastmri's U-Nets receive channels-last activations (a view of the complex-to-channel permute), and the
convolutions keep that layout. Under autograd, ``GroupKernelInstanceNorm2d`` normalises them on a contiguous
copy; the other rule is PyTorch's channels-last group-norm kernel, which the network used before.

1. Per activation shape the default network normalises in a training step (dense and pruned 50 %): median
   microseconds of one forward and backward with the channels-last kernel and with the contiguous copy.
2. The median seconds of a fine-tuning step on the embedded default's training batches (2 slices, 8 coils,
   128 x 128), dense and pruned 50 % (random weights), Adam: the pre-training / supervised objective and the
   self-supervised one (three network forwards), under each rule.
3. The median seconds of a self-supervised step of the pruned network with the measurement-split forward reusing
   the full forward's coil maps (the default: its centre columns are the same) and recomputing them, four rounds.
2 threads.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from unittest import mock

import torch
from validation_run import validation_run

from spade_pl.benchmark.memory import malloc_keeps_allocations as keep_malloc_allocations
from spade_pl.benchmark.timing import median_seconds
from spade_pl.job.pipeline import build
from spade_pl.models import E2EVarNet, norms
from spade_pl.pruning.prune import prune_network
from spade_pl.pruning.settings import PruneSettings

RULES = {"channels-last kernel": lambda x: False, "contiguous copy (default)": norms._trained_channels_last}


def normalised_shapes(network: torch.nn.Module, batch) -> list[tuple[int, ...]]:
    """The input shapes of every instance norm in one forward, in order of first appearance."""
    shapes: dict[tuple[int, ...], None] = {}
    hooks = [
        m.register_forward_hook(lambda _m, args, _out: shapes.setdefault(tuple(args[0].shape)))
        for m in network.modules()
        if isinstance(m, norms.GroupKernelInstanceNorm2d)
    ]
    network(batch.y, batch.physics())
    for hook in hooks:
        hook.remove()
    return list(shapes)


def kernels(shapes: list[tuple[int, ...]]) -> None:
    print("| shape (channels-last) | channels-last kernel, forward + backward us | contiguous copy us |")
    print("|---|---:|---:|")
    for shape in shapes:
        x = torch.randn(*shape).contiguous(memory_format=torch.channels_last).requires_grad_()
        grad = torch.randn(*shape).contiguous(memory_format=torch.channels_last)

        def both(norm: Callable, x=x, grad=grad) -> None:
            x.grad = None
            norm(x, 1e-5).backward(grad)

        direct = median_seconds(lambda: both(norms._kernel), repeats=20, warmup=2) * 1e6
        copied = median_seconds(lambda: both(norms._via_contiguous), repeats=20, warmup=2) * 1e6
        print(f"| {shape} | {direct:.0f} | {copied:.0f} |")


def step_seconds(network: torch.nn.Module, objective: torch.nn.Module, batches: list, steps: int) -> float:
    """Median seconds of one optimisation step (forward, backward, Adam) over ``steps`` batches."""
    network = copy.deepcopy(network).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    cycle = itertools.cycle(batches)

    def step() -> None:
        loss, _ = objective(next(cycle), network)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return median_seconds(step, repeats=steps, warmup=2)


def main() -> None:
    keep_malloc_allocations()
    torch.manual_seed(0)
    overrides = ["prune.ratio=0.5", "finetune=selfsup"]
    run = validation_run(overrides, "training_step_time_")  # also sets 2 threads
    run.datamodule.setup("fit")
    batches = list(itertools.islice(run.datamodule.train_dataloader(), 8))
    dense = run.networks.new()
    pruned = copy.deepcopy(dense)
    prune_network(pruned, batches[0].y, batches[0].physics(), PruneSettings(ratio=0.5))
    objectives = {
        "supervised (L1)": build(run.cfg.pretrain.objective),
        "self-supervised": build(run.cfg.finetune.objective),
    }
    with torch.no_grad():
        shapes = list(dict.fromkeys(normalised_shapes(dense, batches[0]) + normalised_shapes(pruned, batches[0])))
    kernels(shapes)
    print("\n| step (median of 16) | network | " + " | ".join(f"{rule} s" for rule in RULES) + " | ratio |")
    print("|---|---|" + "---:|" * (len(RULES) + 1))
    for (objective_name, objective), (name, network) in itertools.product(
        objectives.items(), (("dense", dense), ("pruned 50 %", pruned))
    ):
        seconds = []
        for rule in RULES.values():
            with mock.patch.object(norms, "_trained_channels_last", rule):
                seconds.append(step_seconds(network, objective, batches, steps=16))
        cells = " | ".join(f"{s:.3f}" for s in seconds)
        print(f"| {objective_name} | {name} | {cells} | {seconds[0] / seconds[-1]:.2f}x |", flush=True)
    reuse(pruned, objectives["self-supervised"], batches)


def reuse(network: torch.nn.Module, objective: torch.nn.Module, batches: list) -> None:
    print("\n| self-supervised step, pruned 50 % (median of 16) | coil maps reused s | recomputed s | ratio |")
    print("|---|---:|---:|---:|")
    for round_ in range(1, 5):
        reused = step_seconds(network, objective, batches, steps=16)
        with mock.patch.object(E2EVarNet, "calibration", lambda self, y, physics: None):
            recomputed = step_seconds(network, objective, batches, steps=16)
        print(f"| round {round_} | {reused:.3f} | {recomputed:.3f} | {recomputed / reused:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
