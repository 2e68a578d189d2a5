"""The contract every MBDL network in spade-pl keeps, so pruning, fine-tuning and benchmarking are generic."""

from __future__ import annotations

import contextlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from spade_pl.core.errors import SpadeInputError, require
from spade_pl.physics.base import DATA_TERM, MeasurementView, MissingOperatorData, Physics


@dataclass(frozen=True)
class LibraryFormat:
    """A network as another library's own class holds it: ``constructor(**arguments).load_state_dict(state)``
    rebuilds it without spade-pl (e.g. a pruned E2E-VarNet as ``fastmri.models.VarNet(chans=9, ...)``)."""

    constructor: str  # import path of the class, e.g. "fastmri.models.VarNet"
    arguments: dict[str, Any]
    state: dict[str, Tensor]
    filename: str  # what ``stage=export`` calls the file


class MBDLNetwork(nn.Module, ABC):
    """A model-based network: physics steps (never pruned) interleaved with learned CNN priors (prunable).

    ``forward(y, physics)`` returns the complex image ``(B, H, W, 2)``. ``priors()`` names every CNN
    prior; ``prior_output_layers()`` names each prior's last layer, whose output channels the physics
    fixes (2 = real, imaginary) and which pruning must leave whole.
    """

    #: what the network needs of a physics beyond the contract (``spade_pl.physics.base.MULTICOIL_KSPACE``,
    #: ``COIL_MAPS`` with the data, ``DATA_TERM`` for whatever the physics' data term needs): a problem whose physics
    #: does not provide it all is refused in one line before any work, a data file that lacks it before training
    needs: frozenset[str] = frozenset()
    #: priors that pruning leaves dense unless asked (``prune.include_sensitivity_net``, ``prune.priors``), e.g.
    #: E2E-VarNet's sensitivity net, whose maps every cascade depends on
    dense_priors: tuple[str, ...] = ()
    #: True for fixed-point networks: a data-dependent number of iterations per forward, so an export captures their
    #: priors only and no CUDA graph runs them; their forward leaves its statistics in ``solver_stats``
    iterative: bool = False
    #: the last forward's solver statistics (``iterations``, ``residual``, ``converged``), for iterative networks
    solver_stats: dict[str, Any] | None = None
    #: where the network's removable stages sit (cascades, unrolled iterations, residual blocks): the dotted path
    #: of an ``nn.ModuleList`` or ``nn.Sequential``, whose entries of type ``stage_type`` (all when None) are the
    #: stages depth pruning (``prune.depth``) may remove; None: the network declares none
    stages_at: str | None = None
    stage_type: type[nn.Module] | None = None
    #: parameters holding one value per stage (e.g. an unrolled network's step sizes), kept with their stages
    stage_parameters: tuple[str, ...] = ()
    #: the constructor argument that counts the stages: the class built with the kept count is the depth-pruned
    #: network (how an exported one is rebuilt without spade-pl)
    stage_argument: str | None = None

    @abstractmethod
    def forward(self, y: Tensor, physics: Physics) -> Tensor: ...

    @abstractmethod
    def priors(self) -> dict[str, nn.Module]: ...

    @abstractmethod
    def prior_output_layers(self) -> dict[str, list[nn.Module]]: ...

    @classmethod
    def architecture_from_weights(cls, state: dict[str, Tensor]) -> dict[str, Any]:
        """The constructor arguments that ``state`` (keyed like this network's ``state_dict``) shows by its
        names and shapes alone, e.g. E2E-VarNet's cascades and channels; ``{}`` when nothing can be told. A
        checkpoint that does not fit the configured network then names the overrides that would fit."""
        return {}

    def min_image_size(self) -> tuple[int, str]:
        """The smallest image side this network takes, and why in words (e.g. "its U-Nets halve the image 3
        times"): a smaller one is refused in one line before any training (it would train into NaN)."""
        return 1, "any size"

    @classmethod
    def needs_for(cls, physics: type[Physics]) -> frozenset[str]:
        """What this network needs of ``physics`` and its data: :attr:`needs`, with ``DATA_TERM`` replaced by
        what the physics' data term needs (multi-coil MRI: coil maps)."""
        uses_data_term = DATA_TERM in cls.needs
        return (cls.needs - {DATA_TERM}) | (physics.data_term_needs if uses_data_term else frozenset())

    @classmethod
    def missing_from(cls, physics: type[Physics]) -> list[str]:
        """What this network needs that ``physics`` does not provide (empty: it fits)."""
        return sorted(cls.needs_for(physics) - physics.provides)

    @classmethod
    def constructor_arguments(cls) -> list[str]:
        """The names of the constructor's arguments (what ``network.model.*`` sets)."""
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    def library_format(self) -> LibraryFormat | None:
        """This network (dense or pruned) in its own library's format, or None when it has none (raises an
        input error saying why when it has one but these weights do not fit it)."""
        return None

    def _stage_positions(self) -> list[int]:
        container = self.get_submodule(self.stages_at) if self.stages_at else []
        return [i for i, entry in enumerate(container) if self.stage_type is None or isinstance(entry, self.stage_type)]

    def stage_count(self) -> int:
        """How many removable stages the network has now (0: it declares none)."""
        return len(self._stage_positions())

    def stage_ids(self) -> list[int]:
        """The dense network's index of each stage still here: priors named by it keep their names (and the
        pruning history its meaning) when depth pruning removes other stages."""
        return list(getattr(self, "_kept_stage_ids", range(self.stage_count())))

    def keep_stages(self, kept: list[int]) -> None:
        """Keep the stages at positions ``kept`` (ascending), remove the others, in place: the network is then the
        one built with ``len(kept)`` stages holding those stages' weights."""
        positions, ids = self._stage_positions(), self.stage_ids()
        require(bool(positions), f"{type(self).__name__} declares no removable stages (stages_at)")
        dropped = {positions[i] for i in range(len(positions)) if i not in set(kept)}
        container = self.get_submodule(self.stages_at)
        entries = [entry for i, entry in enumerate(container) if i not in dropped]
        parent, _, attribute = self.stages_at.rpartition(".")
        rebuilt = nn.ModuleList(entries) if isinstance(container, nn.ModuleList) else nn.Sequential(*entries)
        setattr(self.get_submodule(parent) if parent else self, attribute, rebuilt)
        for name in self.stage_parameters:
            values = getattr(self, name)
            setattr(self, name, nn.Parameter(values.detach()[kept].clone(), requires_grad=values.requires_grad))
        self._kept_stage_ids = [ids[i] for i in kept]

    def next_slice_of(self, volume: Hashable, slice_num: int) -> None:
        """Say that the next forward reconstructs slice ``slice_num`` of ``volume`` (a batch: consecutive slices
        from there). An iterative network may then start its solver from the previous forward's solution when that
        was the slice before, of the same volume (a warm start: adjacent slices are alike); any other forward
        starts cold. Networks without a solver have nothing to start and ignore it."""

    def solve(self, y: Tensor, physics: Physics) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
        """For a fixed-point network: its fixed point ``x*`` (found without gradients) and the map ``T`` whose
        fixed point it is, which Jacobian regularisation differentiates. Other networks have none."""
        raise SpadeInputError(f"{type(self).__name__} solves no fixed point (only iterative networks do)")

    def select_priors(self, names: list[str] | None) -> dict[str, nn.Module]:
        """The priors called ``names`` (all of them for ``None``); unknown names are an input error."""
        priors = self.priors()
        if names is None:
            return priors
        unknown = [n for n in names if n not in priors]
        require(not unknown, f"prior name(s) {unknown} do not exist; this network has: {', '.join(priors)}")
        return {n: priors[n] for n in names}

    def cascade_images(self, y: Tensor, physics: Physics) -> list[Tensor] | None:
        """The image after every cascade of an unrolled network, the last being :meth:`forward`'s output (what
        per-cascade distillation matches to the teacher's); None for networks without cascades."""
        return None

    def calibration(self, y: Tensor, physics: Physics) -> Tensor | None:
        """What the network computes from the fully sampled centre of ``y`` alone (E2E-VarNet: its coil maps),
        or None. A forward on a subset of the same scan's columns that keeps the whole centre (a measurement
        split) can take it instead of computing it again: the same values, one sub-network pass fewer."""
        return None

    def measurement_physics(self, y: Tensor, physics: Physics) -> Physics:
        """The operator A that the network itself assumes for ``y`` (its own coil maps, if it estimates them)."""
        return physics

    def measurement_view(self, y: Tensor, physics: Physics, reference: MBDLNetwork | None = None) -> MeasurementView:
        """Where measurement-based objectives compare (:class:`~spade_pl.physics.base.MeasurementView`). Here:
        the image ``x = f(y)`` with ``A`` as ``reference`` (the frozen teacher, else this network) assumes it,
        frozen, so no loss can be lowered by moving ``A``. A network whose output domain is another (E2E-VarNet:
        multi-coil k-space) returns that domain's view."""
        with torch.no_grad():
            operator = (reference if reference is not None else self).measurement_physics(y, physics)
        try:
            operator = operator.frozen()
        except MissingOperatorData as err:
            raise SpadeInputError(
                f"self-supervised fine-tuning needs the forward operator A, which needs {err.what}; "
                f"{type(self).__name__} does not estimate them and the data has none: {err.remedy}"
            ) from None
        return MeasurementView(
            operator=operator,
            estimate=lambda y_, physics_, _calibration: self(y_, physics_),
            measure=lambda x, operator_: operator_.A(x),
            to_planes=operator.to_channels,
            from_planes=lambda planes, _like: operator.from_channels(planes),
        )


@dataclass
class PriorCalls:
    """What the priors received in a forward: each prior's first input and how often it was called."""

    inputs: dict[str, Tensor] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def recorded_prior_calls(network: MBDLNetwork, names: list[str] | None = None) -> Iterator[PriorCalls]:
    """Within: every forward of ``network`` records, per prior (``names``, else all), its first input and its
    calls. Pruning traces each prior on the input it really receives; the benchmark counts MACs per call times
    calls (a DEQ's solver iterations). Both read the same record."""
    priors = network.select_priors(names)
    record = PriorCalls(calls=dict.fromkeys(priors, 0))

    def seen(name: str, args: tuple[Tensor, ...]) -> None:
        record.calls[name] += 1
        record.inputs.setdefault(name, args[0].detach().clone())

    hooks = [
        prior.register_forward_pre_hook(lambda _m, args, name=name: seen(name, args)) for name, prior in priors.items()
    ]
    try:
        yield record
    finally:
        for hook in hooks:
            hook.remove()
