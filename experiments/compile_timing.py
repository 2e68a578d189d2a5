"""Eager vs torch.compile (inductor) for the default E2E-VarNet, dense and pruned 50 %, on this CPU: why
benchmark.runtime offers no ``compile``.

    python experiments/compile_timing.py

The embedded default's shapes (128 x 128, 8 coils; 4 cascades of 8 channels, 3 pools), random weights, 2
threads, median of 10 after 2 warm-up calls, no gradients. Prints, per network, the eager and compiled
medians, the compile time (first call) and the compiled output's max relative difference from eager.
"""

from __future__ import annotations

import copy
import time

import torch

from spade_pl.benchmark.memory import malloc_keeps_allocations as keep_malloc_allocations
from spade_pl.benchmark.runtime import relative_difference
from spade_pl.benchmark.timing import median_seconds
from spade_pl.models import E2EVarNet
from spade_pl.physics.mri import MultiCoilMRI
from spade_pl.pruning.prune import prune_network
from spade_pl.pruning.settings import PruneSettings


def main() -> None:
    keep_malloc_allocations()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    size = 128
    mask = torch.zeros(1, 1, 1, size, 1, dtype=torch.bool)
    mask[..., ::4, :] = True
    mask[..., size // 2 - 4 : size // 2 + 4, :] = True
    y = torch.randn(1, 8, size, size, 2) * mask
    physics = MultiCoilMRI(mask=mask, num_low_frequencies=8)
    dense = E2EVarNet(num_cascades=4, chans=8, pools=3, sens_chans=4, sens_pools=3).eval()
    pruned = copy.deepcopy(dense)
    prune_network(pruned, y, physics, PruneSettings(ratio=0.5))
    times = {}
    with torch.no_grad(), torch._dynamo.config.patch(cache_size_limit=64):
        for name, network in (("dense", dense), ("pruned", pruned)):
            reference = network(y, physics)
            eager = median_seconds(lambda network=network: network(y, physics), repeats=10, warmup=2) * 1000
            compiled = torch.compile(network)
            start = time.perf_counter()
            output = compiled(y, physics)
            compile_s = time.perf_counter() - start
            fast = median_seconds(lambda compiled=compiled: compiled(y, physics), repeats=10, warmup=2) * 1000
            times[name] = (eager, fast)
            print(
                f"{name}: eager {eager:.1f} ms, compiled {fast:.1f} ms (compile {compile_s:.1f} s, "
                f"max relative difference {relative_difference(output, reference):.1e})",
                flush=True,
            )
    for i, runtime in enumerate(("eager", "compiled")):
        print(f"dense vs pruned, {runtime}: {times['dense'][i] / times['pruned'][i]:.2f}x")


if __name__ == "__main__":
    main()
