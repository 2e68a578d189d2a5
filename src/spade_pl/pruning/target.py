"""Latency-targeted pruning (``prune.target_speedup``): the smallest ratio whose measured speed-up reaches the
target on this device, found by bisection over the ratio with the benchmark's own timing.

The MAC count is a poor guide to time (small convolutions run far below their MAC rate on a CPU; a GPU is
launch-bound at batch 1), so every candidate is pruned and timed against the dense network, interleaved, in
this process. The speed-up grows with the ratio up to timing noise; bisection needs ~log2(0.9 / resolution)
measurements, each reported.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spade_pl.errors import require

log = logging.getLogger(__name__)
#: the largest ratio tried: a network with 10% of its channels is as far as structured pruning sensibly goes
MAX_RATIO = 0.9
#: bisection stops when the bracket is this narrow
RESOLUTION = 0.025


@dataclass
class TargetSearch:
    target: float
    ratio: float = 0.0
    #: (ratio, measured speed-up) in the order measured
    measured: list[tuple[float, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "ratio": self.ratio, "measured": [list(m) for m in self.measured]}

    def markdown(self, device: str) -> str:
        steps = ", ".join(f"{r:.3f} → {s:.2f}x" for r, s in sorted(self.measured))
        return (
            f"\nLatency target {self.target:.2f}x on {device}: prune.ratio={self.ratio:.3f} chosen, the smallest "
            f"measured to reach it (ratio → measured whole-forward speed-up: {steps}).\n"
        )


def largest_ratio(widths: list[int]) -> float:
    """The largest ratio that keeps a channel in every group of these widths (and at most MAX_RATIO)."""
    return min(MAX_RATIO, math.floor((1 - 1 / min(widths)) * 1e6) / 1e6)  # rounded down: floor(C (1 - r)) >= 1


def smallest_ratio_reaching(
    target: float, speedup_at: Callable[[float], float], max_ratio: float = MAX_RATIO
) -> TargetSearch:
    """Bisection for the smallest ratio in (0, max_ratio] with ``speedup_at(ratio) >= target``."""
    search = TargetSearch(target=target)

    def measure(ratio: float) -> float:
        speedup = speedup_at(ratio)
        search.measured.append((ratio, speedup))
        log.info("[prune] target %.2fx: ratio %.3f measured %.2fx", target, ratio, speedup)
        return speedup

    best = measure(max_ratio)
    require(
        best >= target,
        f"prune.target_speedup={target} is out of reach on this device: pruning {max_ratio:.0%} of the channels "
        f"measured {best:.2f}x; allowed: a target up to about that",
    )
    low, high = 0.0, max_ratio
    while high - low > RESOLUTION:
        middle = round((low + high) / 2, 4)
        if measure(middle) >= target:
            high = middle
        else:
            low = middle
    search.ratio = high
    return search
