"""SPADE pruning: remove whole channels from every dependency group of each CNN prior.

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

import importlib
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from spade_pl.errors import SpadeInputError, require
from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.mri import MultiCoilMRI
from spade_pl.pruning.widths import kept_channels

IMPORTANCES = ("l1", "l2", "random")
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

    @property
    def prunes(self) -> bool:
        return self.ratio > 0 or self.target_speedup is not None

    def __post_init__(self) -> None:
        require(
            isinstance(self.ratio, int | float) and 0 <= self.ratio < 1,
            f"prune.ratio={self.ratio} is invalid; allowed: 0 <= ratio < 1 (the fraction of channels removed)",
        )
        importance_class(self.importance)  # a bad name or class is one line now, not at pruning time
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


def _importance(spec: str | dict[str, Any]) -> tp.importance.Importance:
    """The importance object: the shorthands as SPADE defines them (group sums, no normalisation), or the
    configured class with its arguments."""
    if isinstance(spec, dict):
        return instantiate(spec)
    if spec == "random":
        return tp.importance.RandomImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if spec == "l1" else 2, group_reduction="sum", normalizer=None)


def conv_widths(module: nn.Module, exclude: list[nn.Module]) -> list[int]:
    """Distinct output widths of the prunable conv layers, ascending (e.g. a U-Net's 18/36/72/144/288)."""
    skip = {id(m) for m in exclude}
    widths = {
        m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) and id(m) not in skip
    }
    return sorted(widths)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def transposed_conv_macs(module: nn.modules.conv._ConvTransposeNd, inputs: tuple[Tensor, ...], output: Tensor) -> None:
    """MACs of a transposed convolution: every *input* position meets ``k^d · C_out / groups`` weights per input
    channel, plus one bias add per output element. torch-pruning's counter uses the convolution's rule with the
    output positions, which counts a stride-s transposed convolution s^d times (4x for fastMRI's U-Net's)."""
    x = inputs[0]
    weights_per_position = math.prod(module.kernel_size) * module.in_channels * (module.out_channels // module.groups)
    macs = weights_per_position * x.shape[0] * math.prod(x.shape[2:])
    if module.bias is not None:
        macs += output.numel()
    module.__flops__ += int(macs)


for _transposed in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
    tp.utils.op_counter.MODULES_MAPPING[_transposed] = transposed_conv_macs


def count_macs(module: nn.Module, example: Any) -> int:
    """Multiply-accumulates per batch element of one call: torch-pruning's counter (conv/linear/norm layers; a
    convolution's bias adds count one each), with transposed convolutions counted right
    (:func:`transposed_conv_macs`)."""
    with warnings.catch_warnings():  # the counter's own probing of fastmri's Dropout2d is not our concern
        warnings.filterwarnings("ignore", message="dropout2d: Received a 3D input")
        macs, _ = tp.utils.count_ops_and_params(module, example)
    return int(macs)


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


def capture_prior_inputs(network: MBDLNetwork, y: Tensor, physics: MultiCoilMRI, names: list[str]) -> dict[str, Tensor]:
    """The input each named prior receives in one forward pass of the whole network (first call of each)."""
    priors = network.priors()
    captured: dict[str, Tensor] = {}
    hooks = [
        priors[name].register_forward_pre_hook(
            lambda _m, args, name=name: captured.setdefault(name, args[0].detach().clone())
        )
        for name in names
    ]
    was_training = network.training
    try:
        network.eval()
        with torch.no_grad():
            network(y, physics)
    finally:
        for hook in hooks:
            hook.remove()
        network.train(was_training)
    return captured


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


def prune_network(network: MBDLNetwork, y: Tensor, physics: MultiCoilMRI, settings: PruneSettings) -> PruningResult:
    """Prune ``network``'s priors in place; return the replayable structure and a per-prior report."""
    names = settings.prior_names(network)
    structure: dict[str, Any] = {"settings": settings.as_dict(), "priors": {}}
    result = PruningResult(structure=structure, network_params=(count_params(network),) * 2)
    if settings.ratio == 0 or not names:
        return result
    paths = {id(module): path for path, module in network.named_modules()}
    inputs = capture_prior_inputs(network, y, physics, names)
    priors, output_layers = network.priors(), network.prior_output_layers()
    require(settings.round_to != "auto", "prune.round_to=auto must be resolved (by measurement) before pruning")
    for name in names:
        _check_channels_survive(name, priors[name], settings, output_layers[name])
    for name in names:
        prior, example, fixed = priors[name], inputs[name], output_layers[name]
        before = (conv_widths(prior, fixed), count_params(prior), count_macs(prior, example) * len(example))
        was_training = prior.training
        pruner = tp.pruner.BasePruner(
            prior,
            example,
            importance=_importance(settings.importance),
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
        result.reports[name] = PriorReport(
            widths_before=before[0],
            widths_after=conv_widths(prior, fixed),
            params_before=before[1],
            params_after=count_params(prior),
            macs_before=before[2],
            macs_after=count_macs(prior, example) * len(example),
        )
    result.network_params = (result.network_params[0], count_params(network))
    return result


def replay_structure(network: MBDLNetwork, structure: dict[str, Any]) -> MBDLNetwork:
    """Re-apply a stored pruning structure to a freshly built (dense) ``network``, in place."""
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
