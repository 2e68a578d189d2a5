"""Objectives as weighted sums of terms that share one step's work (:class:`Sum`).

A fine-tuning objective is a list of terms with weights, e.g. distillation + equivariant imaging::

    finetune.objective:
      _target_: spade_pl.objectives.Sum
      terms:
        distill: {_target_: spade_pl.objectives.Distill, loss: ssim}
        ei: {_target_: spade_pl.objectives.EquivariantImaging}
      weights: {distill: 1.0, ei: 1.0}

The terms of one step read one :class:`StepContext`: the student's estimate ``x1 = f(y)`` in the network's
measurement view (:meth:`~spade_pl.models.base.MBDLNetwork.measurement_view`), the fixed operator ``A`` and
the network's calibration (E2E-VarNet's coil maps) are computed once and reused by every term that needs them.
Every measurement term is a *relative* error, ``‖e‖_p^p / ‖r‖_p^p`` per slice then averaged, so that terms sit
on one scale whatever the data's scale, the number of coils or the sampling rate. None reads ground truth.
Any :class:`~spade_pl.objectives.base.Objective` (supervised, distill) is a term too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from functools import cached_property

import torch
from torch import Tensor, nn

from spade_pl.core.errors import SpadeInputError, require
from spade_pl.core.safe_math import root_sum_of_squares
from spade_pl.models.base import MBDLNetwork
from spade_pl.objectives.base import Objective
from spade_pl.physics.base import MeasurementView
from spade_pl.physics.equivariance import TransformGroup
from spade_pl.physics.sample import Sample


def relative_error(estimate: Tensor, reference: Tensor, weight: Tensor | None = None, norm: float = 2) -> Tensor:
    """Mean over the batch of ``‖w (estimate − reference)‖_p^p / ‖w reference‖_p^p`` with ``p = norm``."""
    if weight is not None:
        estimate, reference = estimate * weight, reference * weight

    def size(values: Tensor) -> Tensor:
        return (values.square() if norm == 2 else values.abs().pow(norm)).flatten(1).sum(1)

    return (size(estimate - reference) / size(reference).clamp_min(torch.finfo(reference.dtype).tiny)).mean()


def magnitude_sparsity(planes: Tensor) -> Tensor:
    """Mean over the batch of ``‖m‖₁ / (√N ‖m‖₂)`` for the magnitude ``m`` of ``planes`` (``(B, C, H, W)``: the
    root-sum-of-squares over the channels, i.e. over coils and real/imaginary parts), ``N`` its pixel count.

    Between ``1/√N`` (one bright pixel) and 1 (flat); it falls as the energy gathers in fewer pixels, so it
    pulls a residual-aliasing floor in the background towards zero, and, being scale-invariant, without
    shrinking the image as an L1 penalty would (experiments/LOG.md).
    """
    magnitude = root_sum_of_squares(planes, (1,)).flatten(1)
    l2 = torch.linalg.vector_norm(magnitude, dim=1) * magnitude.shape[1] ** 0.5
    return (magnitude.sum(1) / l2.clamp_min(torch.finfo(planes.dtype).tiny)).mean()


def check_norm(norm: float) -> float:
    require(norm >= 1, f"finetune.objective.norm={norm} is invalid; allowed: >= 1 (2: squared errors)")
    return float(norm)


class StepContext:
    """What the terms of one training or validation step share, each computed once on first use."""

    def __init__(self, batch: Sample, student: MBDLNetwork, teacher: MBDLNetwork | None):
        self.batch, self.student, self.teacher = batch, student, teacher
        self.y, self.physics = batch.y, batch.physics()

    @cached_property
    def calibration(self) -> Tensor | None:
        """The network's calibration from the centre of ``y`` (reused by forwards on splits that keep it)."""
        return self.student.calibration(self.y, self.physics)

    @cached_property
    def view(self) -> MeasurementView:
        """The network's measurement view: fixed operator, estimate, measurement, channel planes."""
        self.calibration  # noqa: B018 (computed first, as the forward below reuses it)
        return self.student.measurement_view(self.y, self.physics, self.teacher)

    @cached_property
    def x(self) -> Tensor:
        """``x1 = f(y)`` in the view's domain."""
        return self.view.estimate(self.y, self.physics, self.calibration)


class Term(nn.Module, ABC):
    """One ground-truth-free term of a :class:`Sum`: ``term(context) -> value`` (a scalar)."""

    uses_ground_truth = False
    needs_teacher = False

    @abstractmethod
    def forward(self, ctx: StepContext) -> Tensor: ...


class MeasurementConsistency(Term):
    """``‖A x1 − y‖_p^p / ‖y‖_p^p``: the estimate explains the measurements."""

    def __init__(self, norm: float = 2):
        super().__init__()
        self.norm = check_norm(norm)

    def forward(self, ctx: StepContext) -> Tensor:
        return relative_error(ctx.view.measure(ctx.x, ctx.view.operator), ctx.y, norm=self.norm)


class EquivariantImaging(Term):
    """Equivariant imaging (Chen, Tachella & Davies 2021): with ``x2 = T_g x1``, ``A_g`` = ``A`` transformed
    alike, ``y2 = A_g x2`` and ``x3 = f(y2)``, the mean over the drawn ``g`` of
    ``‖M_g (x3 − x2)‖ / ‖M_g x2‖ + ‖A_g x3 − y2‖ / ‖y2‖`` (relative, ``p = norm``; ``M_g`` masks the corners an
    arbitrary-angle rotation leaves empty). ``transform``: the group, ``None`` = the physics' own
    (:meth:`~spade_pl.physics.base.Physics.ei_transforms`: what its operator is not equivariant to)."""

    def __init__(self, transform: TransformGroup | None = None, norm: float = 2):
        super().__init__()
        self.transform = transform
        self.norm = check_norm(norm)

    def forward(self, ctx: StepContext) -> Tensor:
        view, x1 = ctx.view, ctx.x
        group = self.transform or ctx.physics.ei_transforms()
        total = x1.new_zeros(())
        for g in group.sample(ctx.student.training):

            def act(planes: Tensor, g=g) -> Tensor:
                return group.apply(planes, g)

            x2 = view.from_planes(act(view.to_planes(x1)), x1)
            transformed = view.operator.transformed(act)
            y2 = view.measure(x2, transformed)
            x3 = view.estimate(y2, transformed, None)
            valid = group.valid(view.to_planes(x1), g)
            total = (
                total
                + relative_error(view.to_planes(x3), view.to_planes(x2), valid, self.norm)
                + relative_error(view.measure(x3, transformed), y2, norm=self.norm)
            )
        return total / group.num_transforms


class Splitting(Term):
    """Measurement splitting (SSDU): the sampled columns outside the centre split into kept ``Θ`` and held-out
    ``Λ`` (``fraction``), ``‖A_Λ f(y_Θ) − y_Λ‖ / ‖y_Λ‖``. Training draws a new split every step; evaluation
    always the one of ``eval_seed``, so that ``val/loss`` compares epochs."""

    def __init__(self, fraction: float = 0.4, eval_seed: int = 0, norm: float = 2):
        super().__init__()
        require(0 < fraction < 1, f"finetune.objective.split_fraction={fraction} is invalid; allowed: 0 < fraction < 1")
        self.fraction, self.eval_seed, self.norm = float(fraction), int(eval_seed), check_norm(norm)

    def forward(self, ctx: StepContext) -> Tensor:
        generator = None if ctx.student.training else torch.Generator().manual_seed(self.eval_seed)
        kept, held_out = ctx.physics.split(self.fraction, generator)
        view = ctx.view
        x_kept = view.estimate(kept.apply_mask(ctx.y), kept, ctx.calibration)
        held = view.operator.with_mask(held_out.mask)
        return relative_error(view.measure(x_kept, held), held.apply_mask(ctx.y), norm=self.norm)


class MagnitudeSparsity(Term):
    """:func:`magnitude_sparsity` of ``x1``'s channel planes: a scale-invariant sparsity prior."""

    def forward(self, ctx: StepContext) -> Tensor:
        return magnitude_sparsity(ctx.view.to_planes(ctx.x))


class Sum(Objective):
    """``Σ_k weight_k · term_k`` over the named ``terms`` in their order, one :class:`StepContext` per step;
    each term's value is logged as ``<log_prefix><name>``. A term of weight 0 is not computed. ``weights``
    defaults to 1 for every term; a weight for a term that is not listed is an input error."""

    def __init__(
        self,
        terms: Mapping[str, Term | Objective],
        weights: Mapping[str, float] | None = None,
        log_prefix: str = "",
    ):
        super().__init__()
        weights = dict(weights or {})
        for name in weights.keys() - terms.keys():
            raise SpadeInputError(f"finetune.objective.weights.{name} names no term; the terms are: {', '.join(terms)}")
        for name, weight in weights.items():
            require(weight >= 0, f"finetune.objective.weights.{name}={weight} is invalid; allowed: >= 0")
        require(len(terms) > 0, "finetune.objective.terms is empty; list at least one term")
        self.terms = nn.ModuleDict(dict(terms))
        self.weights = {name: float(weights.get(name, 1.0)) for name in terms}
        self.log_prefix = log_prefix
        self.uses_ground_truth = any(term.uses_ground_truth for term in self.terms.values())
        self.needs_teacher = any(term.needs_teacher for term in self.terms.values())

    def forward(
        self, batch: Sample, student: MBDLNetwork, teacher: MBDLNetwork | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        ctx = StepContext(batch, student, teacher)
        loss: Tensor | None = None
        logs: dict[str, Tensor] = {}
        for name, term in self.terms.items():
            weight = self.weights[name]
            if not weight:
                continue
            if isinstance(term, Objective):  # a whole objective as a term: its own loss and logs
                value, term_logs = term(batch, student, teacher)
                logs.update(term_logs)
            else:
                value = term(ctx)
            logs[f"{self.log_prefix}{name}"] = value.detach()
            weighted = value if weight == 1 else weight * value
            loss = weighted if loss is None else loss + weighted
        require(loss is not None, "finetune.objective: every term has weight 0; give one a weight > 0")
        return loss, logs
