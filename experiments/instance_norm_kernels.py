"""Channels-last instance norm on this CPU: why ``GroupKernelInstanceNorm2d`` times two kernels per shape.

    python experiments/instance_norm_kernels.py

1. Per activation shape of the paper E2E-VarNet (dense and pruned 50 %, 320 x 320, 16 coils): median
   microseconds of PyTorch's channels-last group-norm kernel and of the contiguous kernel on a contiguous copy
   converted back (the two candidates of ``channels_last_instance_norm``).
2. The paper E2E-VarNet with the sensitivity net pruned too, contiguous weights, on a synthetic slice: whole
   forward (median of 5 after a warm-up) and instance-norm time (``torch.profiler``, mean of 3 forwards), dense
   and pruned, with the channels-last kernel only and with the per-shape choice; then the choices made.
2 threads, random weights, no gradients.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch.profiler import ProfilerActivity, profile

from spade_pl.benchmark.memory import malloc_keeps_allocations as keep_malloc_allocations
from spade_pl.benchmark.runtime import constants_fixed
from spade_pl.benchmark.timing import median_seconds
from spade_pl.data.mri.datamodule import synthetic_mri_batch
from spade_pl.models import E2EVarNet, norms
from spade_pl.pruning.prune import prune_network
from spade_pl.pruning.settings import PruneSettings

SHAPES = [(16, 4, 320, 320), (16, 8, 320, 320), (16, 8, 160, 160)]
SHAPES += [(1, 9, 320, 320), (1, 18, 320, 320), (1, 36, 160, 160)]


def kernels() -> None:
    print("shape (channels-last input) | channels-last kernel us | contiguous copy, kernel, back us")
    for shape in SHAPES:
        x = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
        direct = median_seconds(lambda x=x: norms._kernel(x, 1e-5), repeats=20, warmup=1) * 1e6
        copied = median_seconds(lambda x=x: norms._via_contiguous(x, 1e-5), repeats=20, warmup=1) * 1e6
        print(f"{shape} | {direct:.0f} | {copied:.0f}")


def forwards() -> None:
    batch = synthetic_mri_batch(320, 16, {"mask_type": "uniform", "accelerations": [6], "center_fractions": [0.08]})
    physics, y = constants_fixed(batch.physics()), batch.y
    dense = E2EVarNet().eval()
    pruned = copy.deepcopy(dense)
    prune_network(pruned, y, physics, PruneSettings(ratio=0.5, include_sensitivity_net=True))
    for choice in ("channels-last kernel only", "per-shape choice"):
        for name, network in (("dense", dense), ("pruned", pruned)):
            measuring = norms.measured_kernels() if choice == "per-shape choice" else contextlib.nullcontext()
            with torch.no_grad(), measuring:
                ms = median_seconds(lambda network=network: network(y, physics), repeats=5, warmup=1) * 1000
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(3):
                        network(y, physics)
            norm_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key == "aten::native_group_norm")
            print(f"{choice}, {name}: forward {ms:.1f} ms, instance norm {norm_us / 3000:.1f} ms per forward")
    for (shape, _, _), via_contiguous in norms._VIA_CONTIGUOUS.items():
        print(f"chosen for {shape}: {'contiguous copy' if via_contiguous else 'channels-last kernel'}")


def main() -> None:
    keep_malloc_allocations()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    kernels()
    forwards()


if __name__ == "__main__":
    main()
