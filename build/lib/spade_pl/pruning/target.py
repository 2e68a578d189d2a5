"""Latency-targeted pruning (``prune.target_speedup``): the smallest ratio whose measured speed-up reaches the
target on this device, found by bisection over the ratio with the benchmark's own timing.

The MAC count is a poor guide to time (small convolutions run far below their MAC rate on a CPU; a GPU is
launch-bound at batch 1), so every candidate is pruned and timed against the dense network, interleaved, in
this process. The speed-up grows with the ratio up to timing noise; bisection needs ~log2(0.9 / resolution)
measurements, each reported, and the ratio it settles on is timed once more before it is accepted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spade_pl.core.errors import RunFailure

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
    """Bisection for the smallest ratio in (0, max_ratio] with ``speedup_at(ratio) >= target``.

    Timings are noisy: the ratio bisection settles on is timed again and kept only if it reaches the target
    again (a ratio counts with the lowest speed-up measured for it); otherwise the search goes on above it."""
    search = TargetSearch(target=target)
    lowest: dict[float, float] = {}

    def measure(ratio: float) -> float:
        speedup = speedup_at(ratio)
        search.measured.append((ratio, speedup))
        lowest[ratio] = min(speedup, lowest.get(ratio, math.inf))
        log.info("[prune] target %.2fx: ratio %.3f measured %.2fx", target, ratio, speedup)
        return lowest[ratio]

    def out_of_reach() -> RunFailure:
        return RunFailure(
            f"prune.target_speedup={target} is out of reach on this device: pruning {max_ratio:.0%} of the channels "
            f"measured {lowest[max_ratio]:.2f}x; allowed: a target up to about that"
        )

    if measure(max_ratio) < target:
        raise out_of_reach()
    low = 0.0
    while True:
        passing = [r for r, s in lowest.items() if s >= target and r > low]
        if not passing:
            raise out_of_reach()
        high = min(passing)
        while high - low > RESOLUTION:
            middle = round((low + high) / 2, 4)
            if measure(middle) >= target:
                high = middle
            else:
                low = middle
        if measure(high) >= target:  # confirmed by a second timing
            search.ratio = high
            return search
        low = high  # that speed-up was noise: look above it
