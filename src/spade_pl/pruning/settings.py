"""The ``prune`` config group as validated settings, and the torch-pruning importance they name."""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import Any

import torch_pruning as tp
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from spade_pl.core.errors import require
from spade_pl.models.base import MBDLNetwork

IMPORTANCES = ("l1", "l2", "random")
#: how depth pruning chooses the stages it removes (spade_pl.pruning.depth)
DEPTH_IMPORTANCES = ("measured", "uniform", "last")
# torch-pruning importances that read .grad (a backward pass before pruning) or activations (forward hooks)
NEEDS_GRADIENTS = (
    tp.importance.GroupTaylorImportance,
    tp.importance.TaylorImportance,
    tp.importance.GroupHessianImportance,
    tp.importance.HessianImportance,
    tp.importance.OBDCImportance,
    tp.importance.ActivationImportance,
)


@dataclass(frozen=True)
class PruneSettings:
    """The ``prune`` config group, validated."""

    ratio: float = 0.5
    importance: str | dict[str, Any] = "l1"  # a shorthand, or {_target_: <torch_pruning importance>, ...}
    global_pruning: bool = False
    round_to: int | str | None = None  # None, a multiple, or "auto" (measured: spade_pl.pruning.widths)
    iterative_steps: int = 1
    priors: list[str] | None = None  # None: every prior of the network (see include_sensitivity_net)
    include_sensitivity_net: bool = False
    target_speedup: float | None = None  # instead of ``ratio``: the smallest ratio measured to reach it
    depth: float = 0.0  # the fraction of the network's removable stages removed (before the channels)
    depth_importance: str = "measured"  # one of DEPTH_IMPORTANCES

    @property
    def prunes(self) -> bool:
        return self.ratio > 0 or self.target_speedup is not None or self.depth > 0

    def __post_init__(self) -> None:
        require(
            isinstance(self.ratio, int | float) and 0 <= self.ratio < 1,
            f"prune.ratio={self.ratio} is invalid; allowed: 0 <= ratio < 1 (the fraction of channels removed)",
        )
        importance_class(self.importance)  # a bad name or class is one line now, not at pruning time
        require(
            isinstance(self.depth, int | float) and not isinstance(self.depth, bool) and 0 <= self.depth < 1,
            f"prune.depth={self.depth} is invalid; allowed: 0 <= depth < 1 (the fraction of stages removed)",
        )
        require(
            self.depth_importance in DEPTH_IMPORTANCES,
            f"prune.depth_importance={self.depth_importance!r} is unknown; allowed: {', '.join(DEPTH_IMPORTANCES)}",
        )
        require(
            int(self.iterative_steps) >= 1, f"prune.iterative_steps={self.iterative_steps} is invalid; allowed: >= 1"
        )
        require(
            self.target_speedup is None
            or (isinstance(self.target_speedup, int | float) and 1 < self.target_speedup < 100),
            f"prune.target_speedup={self.target_speedup} is invalid; allowed: null or a speed-up > 1 (e.g. 2.0)",
        )
        require(
            self.round_to is None
            or self.round_to == "auto"
            or (isinstance(self.round_to, int) and not isinstance(self.round_to, bool) and self.round_to >= 1),
            f"prune.round_to={self.round_to} is invalid; allowed: null, an integer >= 1, or auto",
        )
        require(
            self.round_to != "auto" or self.target_speedup is None,
            "prune.round_to=auto and prune.target_speedup are two measured choices of one structure; allowed: "
            "one of them at a time",
        )

    @classmethod
    def from_config(cls, cfg: Any) -> PruneSettings:
        values = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        if values.get("priors") is not None:
            values["priors"] = list(values["priors"])
        return cls(**values)

    def prior_names(self, network: MBDLNetwork) -> list[str]:
        """The priors these settings prune on ``network`` (unknown names are an input error)."""
        if self.priors is not None:
            return list(network.select_priors(list(self.priors)))
        return [n for n in network.priors() if n not in network.dense_priors or self.include_sensitivity_net]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def located(path: str) -> Any:
    """The object a dotted path names (``torch_pruning.importance.LAMPImportance``: a module, then attributes,
    as Hydra's ``_target_`` resolves it), or None."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name, None)
        return found
    return None


def importance_class(spec: str | dict[str, Any]) -> type[tp.importance.Importance]:
    """The torch-pruning importance class ``prune.importance`` names: a shorthand (``l1``, the SPADE criterion;
    ``l2``; ``random``) or ``{_target_: torch_pruning.importance.<Class>, <its arguments>}``."""
    allowed = f"allowed: {', '.join(IMPORTANCES)}, or {{_target_: torch_pruning.importance.<Class>, ...}}"
    if isinstance(spec, str):
        require(spec in IMPORTANCES, f"prune.importance={spec!r} is unknown; {allowed}")
        return tp.importance.RandomImportance if spec == "random" else tp.importance.GroupMagnitudeImportance
    target = spec.get("_target_") if isinstance(spec, dict) else None
    require(isinstance(target, str), f"prune.importance={spec!r} is invalid; {allowed}")
    found = located(target)
    require(
        isinstance(found, type) and issubclass(found, tp.importance.Importance),
        f"prune.importance._target_={target!r} is not a torch-pruning importance class; {allowed}",
    )
    require(
        not issubclass(found, NEEDS_GRADIENTS),
        f"prune.importance._target_={target!r} ranks channels by gradients of a loss, which one-shot pruning "
        f"does not compute; allowed: importances of the weights (GroupMagnitudeImportance, LAMPImportance, "
        f"FPGMImportance, RandomImportance, ...)",
    )
    return found


def importance_object(spec: str | dict[str, Any]) -> tp.importance.Importance:
    """The importance object: the shorthands as SPADE defines them (group sums, no normalisation), or the
    configured class with its arguments."""
    if isinstance(spec, dict):
        return instantiate(spec)
    if spec == "random":
        return tp.importance.RandomImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if spec == "l1" else 2, group_reduction="sum", normalizer=None)
