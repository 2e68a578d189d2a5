"""A trained network's weights out of the files users have, whatever wrote them.

``ckpt_path=`` takes: a spade-pl checkpoint (dense or pruned); a plain ``state_dict`` of the configured network,
or of the library module it wraps (E2E-VarNet: ``fastmri.models.VarNet``'s own keys, as in fastMRI's released
``*_leaderboard_state_dict.pt``); a Lightning checkpoint of any LightningModule that holds the network as a
sub-module (fastMRI's ``VarNetModule`` keeps it under ``varnet.``); a dict holding a state_dict under a key
(``{"model": net.state_dict(), "optimizer": ...}``). Only the safe loader (``weights_only=True``) reads it.

Where the weights sit is found by their names: every tensor of the file gets a dotted name (nested dicts
flattened, a Lightning checkpoint's ``state_dict`` as the root), and a *prefix* of those names is looked for
whose names are exactly the network's (or its wrapped library module's). One fitting prefix is taken; several
(a student and a teacher) need ``ckpt_prefix=``. A file that fits no prefix, or fits with other shapes, is one
line that names the overrides that would fit, where the file tells them (its hyper-parameters, or the
network's :meth:`~spade_pl.models.base.MBDLNetwork.architecture_from_weights`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from spade_pl.core.errors import SpadeInputError, require
from spade_pl.models.base import MBDLNetwork

#: where spade-pl checkpoints keep the pruned structure and the network's config (``network.model``)
PRUNING_KEY = "spade_pruning"
NETWORK_CONFIG_KEY = "spade_pl_network"
#: how many key names a message shows
SHOWN = 3


@dataclass(frozen=True)
class NetworkWeights:
    """The network's weights found in a file, keyed like ``network.state_dict()``."""

    state: dict[str, Tensor]
    source: str  # what the file was recognised as, for the line that says what was loaded
    structure: dict[str, Any] | None  # a pruned structure to replay first (spade-pl checkpoints), else None
    stated: dict[str, Any]  # the constructor arguments the file states (hyper-parameters), for messages


def flatten(tree: Mapping[Any, Any], prefix: str = "") -> dict[str, Tensor]:
    """Every tensor under ``tree`` (nested dicts) by its dotted name."""
    flat: dict[str, Tensor] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Tensor):
            flat[name] = value
        elif isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
    return flat


def shared_prefixes(keys: list[str]) -> list[str]:
    """``""``, and the first name part when all ``keys`` share it: the one sub-module that holds all the weights,
    which another library's class may be (E2E-VarNet: ``varnet.``, a ``fastmri.models.VarNet``)."""
    first = keys[0].split(".")[0] + "."
    return ["", first] if "." in keys[0] and all(key.startswith(first) for key in keys) else [""]


def top_level(keys: list[str]) -> list[str]:
    """The distinct first name parts of ``keys`` (for a message), at most ``SHOWN`` + 2 of them."""
    seen = list(dict.fromkeys(key.split(".")[0] + ("." if "." in key else "") for key in keys))
    return seen[: SHOWN + 2]


def candidate_mappings(flat: list[str], wanted: list[str]) -> Iterator[tuple[str, str]]:
    """``(strip, add)`` pairs that map a file name ``strip + rest`` onto the network name ``add + rest`` for at
    least one of a few anchor names of the network (first, middle and last)."""
    anchors = {wanted[0], wanted[len(wanted) // 2], wanted[-1]}
    for add in shared_prefixes(wanted):
        for anchor in anchors:
            rest = anchor[len(add) :]
            for name in flat:
                if name.endswith(rest) and (len(name) == len(rest) or name[-len(rest) - 1] == "."):
                    yield name[: len(name) - len(rest)], add


def mapped(flat: dict[str, Tensor], strip: str, add: str) -> dict[str, Tensor]:
    return {add + name[len(strip) :]: value for name, value in flat.items() if name.startswith(strip)}


def distinct_fits(flat: dict[str, Tensor], pairs: set[tuple[str, str]], wanted: set[str]) -> list[tuple[str, str]]:
    """The pairs that map onto exactly the network's names, one per distinct set of tensors (``network.`` with
    nothing added and ``network.varnet.`` with ``varnet.`` added find the same tensors), shortest prefix first."""
    fits: dict[frozenset, tuple[str, str]] = {}
    for strip, add in sorted(pairs, key=lambda pair: (len(pair[0]), pair)):
        state = mapped(flat, strip, add)
        if set(state) == wanted:
            fits.setdefault(frozenset((k, id(v)) for k, v in state.items()), (strip, add))
    return list(fits.values())


def describe_prefix(strip: str, add: str, network: MBDLNetwork) -> str:
    """How the weights were found, in words: ``" of fastmri VarNet"``, ``", weights under 'model.'"``."""
    library = type(network.get_submodule(add.rstrip("."))) if add else None
    of = f" of {library.__module__.split('.')[0]} {library.__qualname__}" if library is not None else ""
    return of + (f", weights under '{strip}'" if strip else "")


def file_kind(checkpoint: dict[str, Any]) -> str:
    if NETWORK_CONFIG_KEY in checkpoint or PRUNING_KEY in checkpoint:
        return "spade-pl checkpoint"
    if isinstance(checkpoint.get("state_dict"), Mapping):
        return "Lightning checkpoint"
    return "state_dict"


def stated_arguments(checkpoint: dict[str, Any], network: MBDLNetwork) -> dict[str, Any]:
    """The constructor arguments the file states: a spade-pl checkpoint's network config, or the hyper-parameters
    of a Lightning checkpoint that are arguments of the network's class (fastMRI's VarNetModule: its sizes)."""
    if NETWORK_CONFIG_KEY in checkpoint:
        return dict(checkpoint[NETWORK_CONFIG_KEY])
    hyper = checkpoint.get("hyper_parameters")
    if not isinstance(hyper, Mapping):
        return {}
    return {k: v for k, v in hyper.items() if k in type(network).constructor_arguments()}


def mismatch(
    where: str, network: MBDLNetwork, state: dict[str, Tensor], stated: dict[str, Any], configured: Mapping[str, Any]
) -> str | None:
    """The one-line reason, with the overrides that fit, when the file states or shows other sizes."""
    found = {**stated, **type(network).architecture_from_weights(state)}
    fixes = {k: v for k, v in found.items() if k != "_target_" and k in configured and configured[k] != v}
    if not fixes:
        return None
    has = ", ".join(f"{k}={v}" for k, v in fixes.items())
    config = ", ".join(f"{k}={configured[k]}" for k in fixes)
    return (
        f"{where} has {has} (configured: {config}); add {' '.join(f'network.model.{k}={v}' for k, v in fixes.items())}"
    )


def find_network_weights(
    checkpoint: Any, path: str, network: MBDLNetwork, configured: Mapping[str, Any], prefix: str | None = None
) -> NetworkWeights:
    """The weights of ``network`` in ``checkpoint`` (read from ``path`` with the safe loader), by name only:
    shapes are checked by :func:`check_shapes` once a pruned structure has been replayed."""
    require(
        isinstance(checkpoint, Mapping),
        f"checkpoint {path} is not a checkpoint: it holds a {type(checkpoint).__name__}; allowed: a state_dict "
        f"(torch.save(model.state_dict(), path)), a Lightning or a spade-pl checkpoint",
    )
    kind = file_kind(checkpoint)
    root = checkpoint["state_dict"] if kind != "state_dict" else checkpoint
    flat = flatten(root)
    require(flat, f"checkpoint {path} holds no tensors; allowed: a state_dict, a Lightning or a spade-pl checkpoint")
    names = list(flat)
    wanted = list(network.state_dict())
    stated = stated_arguments(checkpoint, network)
    pairs = set(candidate_mappings(names, wanted))
    if prefix is not None:
        strip = "" if prefix in ("", ".") else prefix.rstrip(".") + "."
        require(
            any(name.startswith(strip) for name in names),
            f"ckpt_prefix={prefix} matches no tensor of checkpoint {path}; its names start with "
            f"{', '.join(top_level(names))} (allowed: one of these, or ckpt_prefix=null to find it)",
        )
        pairs = {(s, a) for s, a in pairs if s == strip} or {(strip, add) for add in shared_prefixes(wanted)}
    where = f"checkpoint {path} ({kind})"
    target = stated.get("_target_")
    require(
        target in (None, configured.get("_target_")),
        f"{where} holds a {target}, not the configured {configured.get('_target_')}; choose its network=...",
    )
    exact = distinct_fits(flat, pairs, set(wanted))
    if len(exact) > 1:
        raise SpadeInputError(
            f"{where} holds the network under several prefixes ({', '.join(repr(s) for s, _ in exact)}); "
            f"choose one with ckpt_prefix=..."
        )
    if exact:
        strip, add = exact[0]
        structure = checkpoint.get(PRUNING_KEY) if kind == "spade-pl checkpoint" else None
        return NetworkWeights(mapped(flat, strip, add), kind + describe_prefix(strip, add, network), structure, stated)
    best = max(pairs, key=lambda pair: len(set(mapped(flat, *pair)) & set(wanted)), default=None)
    state = mapped(flat, *best) if best is not None else {}
    reason = mismatch(where, network, state, stated, configured)
    if reason is not None:
        raise SpadeInputError(reason)
    if best is None:
        raise SpadeInputError(
            f"{where} has no tensor named like the configured network's ({', '.join(wanted[:SHOWN])}, ...); its "
            f"names start with {', '.join(top_level(names))}; check network=... (or give ckpt_prefix=...)"
        )
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in set(wanted)]
    raise SpadeInputError(
        f"{where} does not hold the configured network{describe_prefix(*best, network)}: {len(missing)} of its "
        f"{len(wanted)} tensors missing ({', '.join(missing[:SHOWN]) or 'none'}), {len(unexpected)} unexpected "
        f"({', '.join(unexpected[:SHOWN]) or 'none'}); check network.model.* / prune.*"
    )


def check_shapes(
    weights: NetworkWeights, path: str, network: MBDLNetwork, configured: Mapping[str, Any]
) -> dict[str, Tensor]:
    """``weights.state`` if every tensor has the network's shape; else one line with the overrides that fit."""
    expected = network.state_dict()
    wrong = [key for key, value in weights.state.items() if value.shape != expected[key].shape]
    if not wrong:
        return weights.state
    where = f"checkpoint {path} ({weights.source})"
    reason = mismatch(where, network, weights.state, weights.stated, configured)
    first = wrong[0]
    raise SpadeInputError(
        reason
        or f"{where} does not fit the configured network: {len(wrong)} tensors of other shapes, e.g. {first} "
        f"{list(weights.state[first].shape)} in the file, {list(expected[first].shape)} in the network; check "
        f"network.model.* / prune.*"
    )
