"""Jacobian regularisation of the DEQ: the Hutchinson estimate against the Jacobian computed in full on a tiny
map, gradients that reach the prior, and the weight as a term added to any strategy's objective."""

from __future__ import annotations

import pytest
import torch

from conftest import sr_batch
from spade_pl.core.errors import SpadeInputError
from spade_pl.models import DEQ, UnrolledHQS
from spade_pl.objectives import Distill, Sum
from spade_pl.objectives.contractivity import (
    check_solves_fixed_point,
    jacobian_frobenius,
    with_contractivity,
)


def tiny_deq() -> tuple[DEQ, object]:
    torch.manual_seed(0)
    batch = sr_batch()
    deq = DEQ(feats=3, num_blocks=1, max_iter=30, tol=1e-5, channels=batch.physics().channels).eval()
    return deq, batch


def test_the_estimate_is_unbiased_for_the_full_jacobian_of_the_map_at_its_fixed_point():
    deq, batch = tiny_deq()
    x_star, fixed_point_map = deq.solve(batch.y, batch.physics())
    jacobian = torch.autograd.functional.jacobian(fixed_point_map, x_star)  # every derivative, one slice
    exact = float(jacobian.square().sum()) / x_star[0].numel()
    generator = torch.Generator().manual_seed(0)
    draws = [float(jacobian_frobenius(deq, batch.y, batch.physics(), generator)) for _ in range(400)]
    assert exact > 0 and sum(draws) / len(draws) == pytest.approx(exact, rel=0.1)


def test_its_gradient_reaches_the_prior_and_the_step_size():
    deq, batch = tiny_deq()
    deq.train()
    jacobian_frobenius(deq, batch.y, batch.physics()).backward()
    assert deq.prior.head.weight.grad is not None and deq.prior.head.weight.grad.abs().sum() > 0
    assert deq.gamma.grad is not None and deq.alpha.grad is not None


def test_the_weight_adds_a_term_to_any_objective_and_zero_leaves_it_alone():
    distill = Distill("l1")
    assert with_contractivity(distill, 0.0) is distill and with_contractivity(None, 1.0) is None
    summed = with_contractivity(distill, 0.1)
    assert isinstance(summed, Sum) and summed.weights == {"objective": 1.0, "contractivity": 0.1}
    deq, batch = tiny_deq()
    deq.train()
    loss, logs = summed(batch, deq, tiny_deq()[0])
    assert torch.isfinite(loss) and logs["contractivity"] > 0 and "objective" in logs


@pytest.mark.parametrize("weight", [-1.0, True])
def test_a_negative_weight_is_one_line(weight):
    with pytest.raises(SpadeInputError, match=r"finetune.contractivity_weight=.* is invalid; allowed: >= 0"):
        with_contractivity(Distill("l1"), weight)


def test_a_network_that_solves_no_fixed_point_is_refused_in_one_line():
    check_solves_fixed_point(tiny_deq()[0])
    with pytest.raises(SpadeInputError, match=r"needs a fixed-point network and UnrolledHQS solves none"):
        check_solves_fixed_point(UnrolledHQS(iterations=1, widths=(4,), blocks=1))


def test_a_job_fine_tunes_a_pruned_deq_with_the_term_as_the_docs_show_it(make_cfg):
    """docs Strategies: ``network=deq prune.ratio=0.5 finetune=distill finetune.contractivity_weight=0.1``, tiny."""
    from spade_pl.job.pipeline import run

    job = ("network=deq", "prune.ratio=0.5", "finetune=distill", "finetune.contractivity_weight=0.1", "debug=limit")
    results = run(make_cfg(*job, "benchmark.repeats=1", "benchmark.warmup=0"))
    assert list(results["models"])[-1] == "pruned + distill"
