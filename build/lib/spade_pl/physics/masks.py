"""Cartesian sampling masks: fastmri's mask functions plus the SPADE reference's uniform mask."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from fastmri.data.subsample import EquispacedMaskFractionFunc, EquiSpacedMaskFunc, MaskFunc, RandomMaskFunc

from spade_pl.core.errors import require


class UniformMaskFunc(MaskFunc):
    """The SPADE reference mask: every R-th column (starting at column 0) plus a fully sampled centre block.

    Deterministic: the same mask for every slice and every call, whatever the seed.
    """

    def calculate_acceleration_mask(
        self, num_cols: int, acceleration: int, offset: int | None, num_low_frequencies: int
    ) -> np.ndarray:
        mask = np.zeros(num_cols, dtype=np.float32)
        mask[:: int(acceleration)] = 1
        return mask


MASK_TYPES: dict[str, type[MaskFunc]] = {
    "random": RandomMaskFunc,
    "equispaced": EquiSpacedMaskFunc,
    "equispaced_fraction": EquispacedMaskFractionFunc,
    "uniform": UniformMaskFunc,
}


def build_mask_func(
    mask_type: str, accelerations: Sequence[int], center_fractions: Sequence[float], seed: int | None = None
) -> MaskFunc:
    """Validate the mask settings and build the mask function (one acceleration/centre pair per entry)."""
    require(mask_type in MASK_TYPES, f"mask type {mask_type!r} is unknown; allowed: {', '.join(sorted(MASK_TYPES))}")
    accelerations, center_fractions = list(accelerations), list(center_fractions)
    require(len(accelerations) > 0, "mask.accelerations is empty; give at least one acceleration >= 1")
    require(
        len(accelerations) == len(center_fractions),
        f"mask.accelerations {accelerations} and mask.center_fractions {center_fractions} must have equal length",
    )
    for acc in accelerations:
        require(
            float(acc) >= 1 and float(acc) == int(acc),
            f"mask acceleration {acc} is invalid; allowed: integers >= 1",
        )
    for frac in center_fractions:
        require(0 < float(frac) < 1, f"mask center fraction {frac} is invalid; allowed: 0 < fraction < 1")
    return MASK_TYPES[mask_type](center_fractions, [int(a) for a in accelerations], seed=seed)
