"""Jacobian regularisation of a fixed-point network (Bai, Koltun & Kolter 2021): a term that keeps the map ``T``
of a DEQ contractive at its fixed point, so that the solver needs few iterations.

A pruned DEQ's speed is set by how many iterations its prior needs, and fine-tuning objectives care only about the
image: without this term, fine-tuning gives back much of the speed pruning bought. ``finetune.contractivity_weight``
adds it, weighted, to any strategy's objective (:func:`with_contractivity`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from spade_pl.core.errors import require
from spade_pl.models.base import MBDLNetwork
from spade_pl.objectives.base import Objective
from spade_pl.objectives.terms import StepContext, Sum, Term


def jacobian_frobenius(network: MBDLNetwork, y: Tensor, physics, generator: torch.Generator | None = None) -> Tensor:
    """Hutchinson's estimate of ``‖J_T(x*)‖_F² / n`` (``n``: the values of one slice's ``x*``), mean over the batch:
    ``‖vᵀ J‖²`` for one Gaussian ``v``, one vector-Jacobian product, differentiable in the network's parameters.
    It solves the fixed point again (without gradients): the step's forward returns only ``T(x*)``."""
    x_star, fixed_point_map = network.solve(y, physics)
    x = x_star.detach().requires_grad_(True)
    with torch.enable_grad():
        mapped = fixed_point_map(x)
        v = torch.randn(mapped.shape, generator=generator, dtype=mapped.dtype).to(mapped.device)
        (vjp,) = torch.autograd.grad(mapped, x, v, create_graph=True)
    return vjp.square().flatten(1).sum(1).mean() / x[0].numel()


class Contractivity(Term):
    """:func:`jacobian_frobenius` of the student; evaluation draws the probe of ``eval_seed``, so that
    ``val/loss`` compares epochs."""

    def __init__(self, eval_seed: int = 0):
        super().__init__()
        self.eval_seed = int(eval_seed)

    def forward(self, ctx: StepContext) -> Tensor:
        generator = None if ctx.student.training else torch.Generator().manual_seed(self.eval_seed)
        return jacobian_frobenius(ctx.student, ctx.y, ctx.physics, generator)


def check_solves_fixed_point(network: MBDLNetwork) -> None:
    """One line when ``network`` solves no fixed point; run by the job before any training."""
    require(
        network.iterative,
        f"finetune.contractivity_weight > 0 needs a fixed-point network and {type(network).__name__} solves none; "
        f"allowed: network=deq, deq_sr and their paper sizes, or finetune.contractivity_weight=0",
    )


def check_contractivity_weight(weight: float) -> float:
    require(
        isinstance(weight, int | float) and not isinstance(weight, bool) and weight >= 0,
        f"finetune.contractivity_weight={weight} is invalid; allowed: >= 0 (0: off)",
    )
    return float(weight)


def with_contractivity(objective: Objective | None, weight: float) -> Objective | None:
    """``objective + weight · Contractivity()`` (its value logged as ``contractivity``); ``objective`` itself for
    weight 0 or no objective."""
    if objective is None or not check_contractivity_weight(weight):
        return objective
    return Sum({"objective": objective, "contractivity": Contractivity()}, {"contractivity": weight})
