"""Objectives as weighted sums of terms: the selfsup preset gives today's numbers, terms compose, bad sums are
one line."""

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import mri_batch, sr_batch
from spade_pl.core.errors import SpadeInputError
from spade_pl.models import DEQ, E2EVarNet, UnrolledHQS
from spade_pl.objectives import (
    Distill,
    EquivariantImaging,
    MeasurementConsistency,
    SelfSupervised,
    StepContext,
    Sum,
    Supervised,
)

_spec = importlib.util.spec_from_file_location(
    "selfsup_reference", Path(__file__).parent / "helpers" / "selfsup_reference.py"
)
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


def e2e_varnet() -> nn.Module:
    return E2EVarNet(num_cascades=2, chans=4, pools=2, sens_chans=2, sens_pools=2)


def deq_mri() -> nn.Module:
    return DEQ(feats=8, num_blocks=1, max_iter=6, tol=1e-3)


def hqs_sr() -> nn.Module:
    return UnrolledHQS(iterations=2, channels=1, widths=(4, 8), blocks=1)


# every shipped kind of measurement view: coil images (E2E-VarNet), image with the data's maps (DEQ), SR
CASES = {
    "e2e_varnet/coil": (e2e_varnet, lambda: mri_batch(with_maps=False)),
    "deq/image": (deq_mri, lambda: mri_batch(with_maps=True)),
    "hqs/sr": (hqs_sr, sr_batch),
}
SETTINGS = {
    "selfsup.yaml": dict(ei_weight=5.0, split_weight=1.0, split_fraction=0.4, norm=2),
    "e2e recipe + sparsity": dict(ei_weight=10.0, split_weight=1.0, sparsity_weight=0.5, norm=1),
}


def loss_and_gradients(objective, network, batch, training: bool, teacher=None):
    network.train(training)
    network.zero_grad()
    torch.manual_seed(123)  # the EI draws and the training split
    loss, logs = objective(batch, network, teacher)
    loss.backward()
    return (
        loss.detach(),
        {k: v for k, v in logs.items()},
        [p.grad.clone() for p in network.parameters() if p.grad is not None],
    )


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("settings", list(SETTINGS))
@pytest.mark.parametrize("case", list(CASES))
def test_the_selfsup_preset_of_terms_gives_the_loss_and_gradients_of_the_one_class_it_replaced(
    case, settings, training
):
    make_network, make_batch = CASES[case]
    torch.manual_seed(0)
    network, batch = make_network(), make_batch()
    kwargs = SETTINGS[settings]
    new = loss_and_gradients(SelfSupervised(**kwargs), network, batch, training)
    old = loss_and_gradients(reference.SelfSupervised(**kwargs), network, batch, training)
    assert torch.equal(new[0], old[0]), (new[0].item(), old[0].item())
    assert new[1].keys() == old[1].keys() and all(torch.equal(new[1][k], old[1][k]) for k in old[1])
    assert len(new[2]) == len(old[2]) > 0 and all(torch.equal(a, b) for a, b in zip(new[2], old[2], strict=True))


def test_distillation_plus_ei_is_a_sum_of_two_terms_that_needs_the_teacher_and_no_ground_truth():
    torch.manual_seed(0)
    student, teacher, batch = e2e_varnet(), e2e_varnet().eval(), mri_batch(with_maps=False)
    objective = Sum({"distill": Distill("l1"), "ei": EquivariantImaging()}, weights={"ei": 0.5})
    assert objective.needs_teacher and not objective.uses_ground_truth
    torch.manual_seed(1)
    loss, logs = objective(batch, student, teacher)
    torch.manual_seed(1)
    distill, _ = Distill("l1")(batch, student, teacher)
    ei = EquivariantImaging()
    assert torch.allclose(loss, distill + 0.5 * ei(StepContext(batch, student, teacher)), rtol=1e-6)
    assert set(logs) == {"distill", "ei"}
    loss.backward()
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_sum_with_ground_truth_in_it_says_so_and_computes_each_shared_value_once():
    calls = []
    torch.manual_seed(0)
    network, batch = deq_mri(), mri_batch(with_maps=True)
    forward = network.forward
    network.forward = lambda y, physics: calls.append(1) or forward(y, physics)
    objective = Sum({"mc": MeasurementConsistency(), "mc_l1": MeasurementConsistency(norm=1)})
    objective(batch, network, None)
    assert len(calls) == 1  # one x1 = f(y) for both terms
    assert Sum({"supervised": Supervised("l1"), "mc": MeasurementConsistency()}).uses_ground_truth


@pytest.mark.parametrize(
    ("terms", "weights", "message"),
    [
        (
            {"mc": MeasurementConsistency()},
            {"ei": 1.0},
            "finetune.objective.weights.ei names no term; the terms are: mc",
        ),
        (
            {"mc": MeasurementConsistency()},
            {"mc": -1.0},
            "finetune.objective.weights.mc=-1.0 is invalid; allowed: >= 0",
        ),
        ({}, None, "finetune.objective.terms is empty"),
    ],
)
def test_a_bad_sum_is_one_line(terms, weights, message):
    with pytest.raises(SpadeInputError, match=message):
        Sum(terms, weights)


def test_a_sum_whose_every_weight_is_zero_is_refused_when_it_would_train():
    torch.manual_seed(0)
    with pytest.raises(SpadeInputError, match="every term has weight 0"):
        Sum({"mc": MeasurementConsistency()}, {"mc": 0.0})(mri_batch(with_maps=True), deq_mri(), None)
