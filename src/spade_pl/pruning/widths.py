"""Hardware-aware widths (``prune.round_to=auto``): round every group's kept channels down to the multiple
measured fastest on this device, at a bounded MAC cost.

A convolution's time is not proportional to its channels: kernels are tiled by 4, 8 or 16 channels, so a
width just past a multiple pays for the next tile (measured on this CPU, one fastmri U-Net at 320 x 320: 9
channels 74.3 ms, 8 channels 65.3 ms, contiguous). Which multiple pays off depends on the device, the layout
and the sizes, so it is measured: each candidate multiple (torch-pruning's ``round_to``, which rounds the
kept count down) prunes a copy of the dense network, and all candidates are timed together, interleaved, as
the benchmark times (layout, runtime). Rounding down removes more than the ratio asks for, so a candidate
may cost at most ``MAX_MAC_LOSS`` of the unrounded network's prior MACs, and it is chosen only if it is at
least ``MIN_GAIN`` faster than no rounding (a smaller gain is within the timing noise of a 2-core CPU:
experiments/LOG.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
#: multiples tried (1 = no rounding)
CANDIDATES = (1, 2, 4, 8, 16)
#: the largest share of the unrounded pruned priors' MACs a rounding may remove
MAX_MAC_LOSS = 0.2
#: the smallest measured gain over no rounding that a rounding must show
MIN_GAIN = 0.05


def kept_channels(width: int, ratio: float, round_to: int | None) -> int:
    """Channels a group of ``width`` keeps: ``floor(width (1 - ratio))``, rounded down to ``round_to``."""
    kept = math.floor(width * (1 - ratio))
    return kept - kept % round_to if round_to else kept


@dataclass
class Candidate:
    round_to: int
    widths: dict[str, list[int]]  # per prior, the distinct conv widths after pruning
    prior_macs: int
    ms: float | None = None  # median whole-forward time; None when not timed (over the MAC bound)
    note: str = ""


@dataclass
class WidthChoice:
    round_to: int
    candidates: list[Candidate] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"round_to": self.round_to, "candidates": [vars(c) for c in self.candidates]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WidthChoice:
        return cls(data["round_to"], [Candidate(**c) for c in data["candidates"]])

    def markdown(self, device: str) -> str:
        rows = []
        for c in self.candidates:
            widths = "; ".join(
                f"{name} {'/'.join(map(str, w)) or 'removed'}" for name, w in _distinct(c.widths).items()
            )
            ms = f"{c.ms:.1f}" if c.ms is not None else "not timed"
            chosen = " (**chosen**)" if c.round_to == self.round_to else ""
            rows.append(f"| {c.round_to}{chosen} | {widths} | {c.prior_macs:,} | {ms} | {c.note} |")
        return "\n".join(
            [
                "",
                f"Hardware-aware widths on {device}: prune.round_to={self.round_to} chosen, the fastest multiple "
                f"measured (at most {MAX_MAC_LOSS:.0%} of the prior MACs removed beyond the ratio, and at least "
                f"{MIN_GAIN:.0%} faster than no rounding to count):",
                "",
                "| round_to | widths after pruning | prior MACs per forward | median ms (whole forward) | |",
                "|---:|---|---:|---:|---|",
                *rows,
                "",
            ]
        )


def _distinct(widths: dict[str, list[int]]) -> dict[str, list[int]]:
    """Priors grouped by identical widths (the cascades of a VarNet), named by the first and the count."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for name, w in widths.items():
        groups.setdefault(tuple(w), []).append(name)
    return {
        (names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1})"): list(w) for w, names in groups.items()
    }


def choose_round_to(candidates: list[Candidate], time_all: Callable[[list[int]], dict[int, float]]) -> WidthChoice:
    """The fastest admissible multiple: ``candidates`` (the first is no rounding) pruned and counted,
    ``time_all(multiples)`` their median seconds per forward, measured together. A multiple that gives the
    widths of a smaller one, or removes too many MACs, is reported but not timed."""
    base = candidates[0]
    admissible: list[Candidate] = []
    first_with: dict[str, int] = {}  # widths -> the first multiple that gave them
    for c in candidates:
        key = repr(sorted(c.widths.items()))
        if key in first_with:
            c.note = f"same widths as round_to={first_with[key]}"
        elif c.prior_macs < (1 - MAX_MAC_LOSS) * base.prior_macs:
            c.note = f"removes {1 - c.prior_macs / base.prior_macs:.0%} of the MACs: over {MAX_MAC_LOSS:.0%}"
        else:
            admissible.append(c)
        first_with.setdefault(key, c.round_to)
    seconds = time_all([c.round_to for c in admissible])
    for c in admissible:
        c.ms = seconds[c.round_to] * 1000
        log.info("[prune] round_to=%d: widths %s, %.1f ms", c.round_to, _distinct(c.widths), c.ms)
    fastest = min(admissible, key=lambda c: c.ms)
    if fastest is not base and fastest.ms > (1 - MIN_GAIN) * base.ms:
        fastest.note = f"fastest, but less than {MIN_GAIN:.0%} faster than no rounding"
        return WidthChoice(base.round_to, candidates)
    return WidthChoice(fastest.round_to, candidates)
