"""SPADE pruning: remove whole channels from every dependency group of each CNN prior (after removing whole
stages, ``prune.depth``: :mod:`spade_pl.pruning.depth`).

Each prior is traced on its own by torch-pruning's DependencyGraph with the real input it received in
one forward pass of the whole MBDL network (tracing a whole E2E-VarNet fails in torch-pruning, and the
physics must never be traced). Importance is the group L1 norm: per channel, the sum over the group's
layers of the L1 norm of that channel's weight slice, biases excluded. ``ratio`` is removed from every
group (local, uniform pruning: each group keeps ``floor(C (1 - ratio))`` channels). The prior's input
channels and its output layer (channels fixed by the physics) are never pruned, nor are the network's
scalars. The pruned structure is kept as torch-pruning's pruning history (plain lists), which
:func:`replay_structure` re-applies to a freshly built dense network, so checkpoints load with the safe
``weights_only=True`` loader.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import Tensor, nn

from spade_pl.core.errors import SpadeInputError, require
from spade_pl.models.base import MBDLNetwork, recorded_prior_calls
from spade_pl.physics.base import Physics
from spade_pl.pruning.counting import conv_widths, count_macs, count_params
from spade_pl.pruning.depth import choose_stages
from spade_pl.pruning.settings import PruneSettings, importance_object
from spade_pl.pruning.widths import kept_channels


@dataclass
class PriorReport:
    """What pruning did to one prior."""

    widths_before: list[int]
    widths_after: list[int]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int


@dataclass
class PruningResult:
    structure: dict[str, Any]
    reports: dict[str, PriorReport] = field(default_factory=dict)
    #: parameters of the whole network (priors, scalars and the parts left dense) before and after
    network_params: tuple[int, int] = (0, 0)
    #: wall time of the pruning itself (tracing, importance, removal)
    seconds: float = 0.0


COUNTS = ("params_before", "params_after", "macs_before", "macs_after")


def totals(reports: Mapping[str, PriorReport]) -> dict[str, int]:
    """Parameters and MACs per call summed over the pruned priors, before and after: the one place totals are
    made, for the report, the logger and the log line."""
    return {key: sum(getattr(r, key) for r in reports.values()) for key in COUNTS}


def sync_norm_widths(prior: nn.Module, example: Tensor) -> None:
    """Set parameter-free InstanceNorms' ``num_features`` to the width they now receive.

    torch-pruning only rewrites layers with parameters; fastmri's U-Net uses ``affine=False`` instance
    norms, which would otherwise warn on every forward that their input width changed.
    """
    norms = [m for m in prior.modules() if isinstance(m, nn.modules.instancenorm._InstanceNorm)]

    def record(module, args) -> None:
        module.num_features = args[0].shape[1]

    hooks = [m.register_forward_pre_hook(record) for m in norms]
    try:
        with torch.no_grad():
            prior(example)
    finally:
        for hook in hooks:
            hook.remove()


def capture_prior_inputs(network: MBDLNetwork, y: Tensor, physics: Physics, names: list[str]) -> dict[str, Tensor]:
    """The input each named prior receives in one forward pass of the whole network (first call of each)."""
    was_training = network.training
    try:
        network.eval()
        with torch.no_grad(), recorded_prior_calls(network, names) as record:
            network(y, physics)
    finally:
        network.train(was_training)
    return record.inputs


def _check_channels_survive(
    name: str, prior: nn.Module, settings: PruneSettings, output_layers: list[nn.Module]
) -> None:
    skip = {id(m) for m in output_layers}
    ratio, round_to = settings.ratio, settings.round_to
    for layer_name, layer in prior.named_modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d) and id(layer) not in skip:
            if math.floor(layer.out_channels * (1 - ratio)) < 1:
                raise SpadeInputError(
                    f"prune.ratio={ratio} would leave 0 of {layer.out_channels} channels in {name}.{layer_name}; "
                    f"allowed here: ratio < {1 - 1 / layer.out_channels:.4g}"
                )
            if kept_channels(layer.out_channels, ratio, round_to) < 1:
                raise SpadeInputError(
                    f"prune.round_to={round_to} would round the {math.floor(layer.out_channels * (1 - ratio))} "
                    f"channels {name}.{layer_name} keeps down to 0; allowed here: a multiple up to that count"
                )


def prior_counts(prior: nn.Module, fixed: list[nn.Module], example: Tensor) -> tuple[list[int], int, int]:
    """A prior's conv widths, parameters and MACs per call (on the batch ``example``)."""
    return conv_widths(prior, fixed), count_params(prior), count_macs(prior, example) * len(example)


def prune_network(network: MBDLNetwork, y: Tensor, physics: Physics, settings: PruneSettings) -> PruningResult:
    """Prune ``network`` in place: its stages (``settings.depth``), then its priors' channels (``settings.ratio``);
    return the replayable structure and a per-prior report (a removed stage's prior: all counts 0)."""
    names = settings.prior_names(network)
    structure: dict[str, Any] = {"settings": settings.as_dict(), "priors": {}}
    result = PruningResult(structure=structure, network_params=(count_params(network),) * 2)
    if (settings.ratio == 0 and settings.depth == 0) or not names:
        return result
    require(settings.round_to != "auto", "prune.round_to=auto must be resolved (by measurement) before pruning")
    inputs = capture_prior_inputs(network, y, physics, names)
    priors, output_layers = network.priors(), network.prior_output_layers()
    before = {name: prior_counts(priors[name], output_layers[name], inputs[name]) for name in names}
    if settings.depth > 0:
        kept = choose_stages(network, y, physics, settings)
        structure["depth"] = {"stages": network.stage_count(), "kept": kept}
        network.keep_stages(kept)
        priors, output_layers = network.priors(), network.prior_output_layers()
        names = [name for name in names if name in priors]
        inputs = capture_prior_inputs(network, y, physics, names)
    if settings.ratio > 0:
        prune_channels(network, names, inputs, settings, structure)
    for name, (widths, params, macs) in before.items():
        after = prior_counts(priors[name], output_layers[name], inputs[name]) if name in priors else ([], 0, 0)
        result.reports[name] = PriorReport(widths, after[0], params, after[1], macs, after[2])
    result.network_params = (result.network_params[0], count_params(network))
    return result


def prune_channels(
    network: MBDLNetwork, names: list[str], inputs: dict[str, Tensor], settings: PruneSettings, structure: dict
) -> None:
    """Remove ``settings.ratio`` of the channels of every dependency group of each named prior (torch-pruning),
    recording each prior's pruning history in ``structure``."""
    paths = {id(module): path for path, module in network.named_modules()}
    priors, output_layers = network.priors(), network.prior_output_layers()
    for name in names:
        _check_channels_survive(name, priors[name], settings, output_layers[name])
    for name in names:
        prior, example, fixed = priors[name], inputs[name], output_layers[name]
        was_training = prior.training
        pruner = tp.pruner.BasePruner(
            prior,
            example,
            importance=importance_object(settings.importance),
            pruning_ratio=settings.ratio,
            global_pruning=settings.global_pruning,
            round_to=settings.round_to,
            iterative_steps=settings.iterative_steps,
            ignored_layers=fixed,
        )
        for _ in range(settings.iterative_steps):
            pruner.step()
        prior.train(was_training)  # building a pruner leaves the module in eval mode
        sync_norm_widths(prior, example)
        structure["priors"][name] = {
            "module": paths[id(prior)],  # where the prior sits in the network (a rebuild needs no spade-pl)
            "input_shape": list(example.shape),
            "history": [[layer, bool(out), [int(i) for i in idxs]] for layer, out, idxs in pruner.pruning_history()],
        }


def replay_structure(network: MBDLNetwork, structure: dict[str, Any]) -> MBDLNetwork:
    """Re-apply a stored pruning structure to a freshly built (dense) ``network``, in place: its removed stages,
    then its channels."""
    if depth := structure.get("depth"):
        require(
            network.stage_count() == depth["stages"],
            f"the checkpoint's pruned structure keeps stages {depth['kept']} of {depth['stages']}; the configured "
            f"network has {network.stage_count()} (network.model sets the dense network's depth)",
        )
        network.keep_stages(list(depth["kept"]))
    priors = network.priors()
    unknown = [n for n in structure.get("priors", {}) if n not in priors]
    require(not unknown, f"pruned structure names prior(s) {unknown} that this network does not have ({list(priors)})")
    for name, entry in structure["priors"].items():
        prior = priors[name]
        was_training = prior.training
        graph = tp.DependencyGraph().build_dependency(prior, example_inputs=torch.zeros(entry["input_shape"]))
        try:
            graph.load_pruning_history([(layer, out, idxs) for layer, out, idxs in entry["history"]])
        except (KeyError, IndexError, RuntimeError) as err:
            raise SpadeInputError(
                f"the checkpoint's pruned structure for prior {name!r} does not fit the configured network ({err})"
            ) from None
        prior.train(was_training)
        sync_norm_widths(prior, torch.zeros(entry["input_shape"]))
    return network
