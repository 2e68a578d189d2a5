"""The contracts, checked for every shipped network x physics x objective (deepinv's style): a new network,
physics or objective is covered by adding it to one list below.

- every network on every physics it fits: finite output of the image's shape, and prune -> save -> load ->
  replay gives the same output; on a physics it does not fit, it says what it misses;
- every physics: ``A_adjoint`` is the adjoint of ``A``; ``split`` gives disjoint masks that cover the mask;
  every transform of its EI group is exact (a permutation of the pixels: the norm and the values are kept);
- every objective on every network it fits: a finite loss with gradients on the student's parameters.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from spade_pl.core.errors import SpadeInputError
from spade_pl.job.preflight import check_adjoint
from spade_pl.models import DEQ, E2EVarNet, UnrolledHQS
from spade_pl.models.base import MBDLNetwork
from spade_pl.models.varnet.given_maps import VarNetGivenMaps
from spade_pl.objectives import Distill, EquivariantImaging, SelfSupervised, Sum, Supervised
from spade_pl.physics.equivariance import Rotations, Shifts, Union
from spade_pl.pruning.prune import prune_network, replay_structure
from spade_pl.pruning.settings import PruneSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from custom_network import UnrolledDnCNN  # noqa: E402  (the worked example of a network of your own)

from conftest import mri_batch, sr_batch  # noqa: E402

#: every physics, by the batch that carries it
PHYSICS: dict[str, Callable[[], object]] = {"csmri": mri_batch, "sr": sr_batch}
#: every shipped network (tiny), with the channels of each physics it may take and its number of removable stages
NETWORKS: dict[str, Callable[..., MBDLNetwork]] = {
    "e2e_varnet": lambda channels, stages=2: E2EVarNet(
        num_cascades=stages, chans=4, pools=2, sens_chans=2, sens_pools=2
    ),
    "varnet": lambda channels, stages=2: VarNetGivenMaps(num_cascades=stages, chans=4, pools=2),
    "deq": lambda channels, stages=1: DEQ(feats=8, num_blocks=stages, max_iter=8, tol=1e-3, channels=channels),
    "du_sr": lambda channels, stages=2: UnrolledHQS(iterations=stages, channels=channels, widths=(4, 8), blocks=1),
    "custom": lambda channels, stages=2: UnrolledDnCNN(channels=channels, iterations=stages, features=8, depth=3),
}
#: every objective (the shipped strategies' and a sum of terms)
OBJECTIVES: dict[str, Callable[[], nn.Module]] = {
    "supervised": lambda: Supervised("l1"),
    "distill": lambda: Distill("l1"),
    "selfsup": lambda: SelfSupervised(ei_weight=1.0, split_weight=1.0),
    "distill+ei": lambda: Sum({"distill": Distill("l1"), "ei": EquivariantImaging()}),
}


def pairs() -> list[tuple[str, str]]:
    return [(n, p) for n in NETWORKS for p in PHYSICS]


def network_on(name: str, problem: str) -> tuple[MBDLNetwork, object]:
    batch = PHYSICS[problem]()
    torch.manual_seed(0)
    return NETWORKS[name](batch.physics().channels), batch


def fits(name: str, problem: str) -> bool:
    network, batch = network_on(name, problem)
    return not network.missing_from(type(batch.physics()))


FITTING = [pair for pair in pairs() if fits(*pair)]


def test_every_network_fits_a_shipped_physics_and_says_what_it_misses_of_the_others():
    assert {name for name, _ in FITTING} == set(NETWORKS)
    for name, problem in pairs():
        network, batch = network_on(name, problem)
        missing = network.missing_from(type(batch.physics()))
        assert (name, problem) in FITTING or (missing and all(isinstance(m, str) for m in missing))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(("name", "problem"), FITTING)
def test_forward_is_finite_with_the_image_shape_and_survives_prune_save_load_replay(name, problem, tmp_path):
    network, batch = network_on(name, problem)
    physics = batch.physics()
    with torch.no_grad():
        out = network.eval()(batch.y, physics)
    assert torch.isfinite(out).all() and batch.image(out).shape[-2:] == batch.target.shape[-2:]
    pruned = copy.deepcopy(network)
    result = prune_network(pruned, batch.y, physics, PruneSettings(ratio=0.5))
    assert result.network_params[1] < result.network_params[0]
    torch.save({"state": pruned.state_dict(), "structure": result.structure}, tmp_path / "pruned.pt")
    saved = torch.load(tmp_path / "pruned.pt", weights_only=True)
    torch.manual_seed(1)
    rebuilt = replay_structure(NETWORKS[name](physics.channels), saved["structure"])
    rebuilt.load_state_dict(saved["state"])
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(batch.y, physics), pruned.eval()(batch.y, physics), atol=1e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(("name", "problem"), FITTING)
def test_removing_stages_leaves_the_network_built_with_fewer_holding_the_kept_stages(name, problem):
    batch = PHYSICS[problem]()
    physics = batch.physics()
    torch.manual_seed(0)
    dense = NETWORKS[name](physics.channels, 4)
    network = copy.deepcopy(dense)
    network.keep_stages([1, 3])
    stages = lambda net: [e for e in net.get_submodule(net.stages_at) if net.stage_type in (None, type(e))]  # noqa: E731
    for kept, source in zip(stages(network), [stages(dense)[1], stages(dense)[3]], strict=True):
        assert all(
            torch.equal(a, b) for a, b in zip(kept.state_dict().values(), source.state_dict().values(), strict=True)
        )
    for parameter in network.stage_parameters:
        assert torch.equal(getattr(network, parameter), getattr(dense, parameter)[[1, 3]])
    assert network.stage_ids() == [1, 3]
    fewer = NETWORKS[name](physics.channels, 2)
    fewer.load_state_dict(network.state_dict())  # strict: exactly the modules of a 2-stage network
    with torch.no_grad():
        assert torch.equal(fewer.eval()(batch.y, physics), network.eval()(batch.y, physics))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(("name", "problem"), FITTING)
def test_depth_and_width_pruning_together_survive_save_load_replay(name, problem, tmp_path):
    batch = PHYSICS[problem]()
    physics = batch.physics()
    torch.manual_seed(0)
    pruned = NETWORKS[name](physics.channels, 4)
    result = prune_network(pruned, batch.y, physics, PruneSettings(ratio=0.5, depth=0.5))
    assert result.structure["depth"]["stages"] == 4 and len(result.structure["depth"]["kept"]) == 2
    torch.save({"state": pruned.state_dict(), "structure": result.structure}, tmp_path / "pruned.pt")
    saved = torch.load(tmp_path / "pruned.pt", weights_only=True)
    rebuilt = replay_structure(NETWORKS[name](physics.channels, 4), saved["structure"])
    rebuilt.load_state_dict(saved["state"])
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(batch.y, physics), pruned.eval()(batch.y, physics), atol=1e-6)


@pytest.mark.parametrize("problem", list(PHYSICS))
def test_every_physics_has_an_adjoint_and_disjoint_covering_splits(problem):
    physics, y = PHYSICS[problem]().physics(), PHYSICS[problem]().y
    g = torch.Generator().manual_seed(0)
    x = torch.randn(physics.A_adjoint(y).shape, generator=g)
    r = torch.randn(y.shape, generator=g)
    assert torch.allclose((physics.A(x) * r).sum(), (x * physics.A_adjoint(r)).sum(), rtol=1e-4)
    kept, held = physics.split(0.4, torch.Generator().manual_seed(0))
    assert not (kept.mask & held.mask).any()
    assert torch.equal(kept.mask | held.mask, physics.mask.expand_as(kept.mask))


@pytest.mark.parametrize("problem", list(PHYSICS))
def test_every_physics_passes_the_preflight_adjoint_check_and_a_broken_adjoint_fails_it(problem):
    batch = PHYSICS[problem]()
    physics = batch.physics()
    check_adjoint(physics, batch.y, f"problem={problem}")  # what every job runs on its first sample
    broken = copy.copy(physics)
    object.__setattr__(broken, "A_adjoint", lambda v: 1.01 * physics.A_adjoint(v))
    with pytest.raises(SpadeInputError, match=rf"^problem={problem}'s physics \(\w+\) fails the adjoint test"):
        check_adjoint(broken, batch.y, f"problem={problem}")


@pytest.mark.parametrize("problem", list(PHYSICS))
def test_the_stated_sample_and_physics_contracts_hold(problem):
    """Samples rebuild field by field (NamedTuples) and physics are dataclasses whose ``mask`` is the measured
    subset: what the benchmark, the export and measurement splitting rely on."""
    batch = PHYSICS[problem]()
    assert isinstance(batch, tuple) and type(batch)(*batch) == batch and batch._fields
    physics = batch.physics()
    assert dataclasses.is_dataclass(physics) and "mask" in {f.name for f in dataclasses.fields(physics)}
    assert dataclasses.replace(physics).mask is physics.mask
    kept, _ = physics.split(0.4, torch.Generator().manual_seed(0))
    assert kept.mask is not None and physics.with_mask(kept.mask).mask is kept.mask


@pytest.mark.parametrize("problem", list(PHYSICS))
def test_every_transform_of_every_physics_ei_group_is_exact(problem):
    group = PHYSICS[problem]().physics().ei_transforms()
    members = group.groups if isinstance(group, Union) else [group]
    planes = torch.randn(1, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    elements = []
    for member in members:
        if isinstance(member, Rotations):
            elements += [(member, a) for a in member.angles]
        elif isinstance(member, Shifts):
            elements += [(member, s) for s in member.shifts]
    assert elements, "the default group has exact elements to check"
    for member, g in elements:
        moved = member.apply(planes, g)
        assert torch.equal(moved.flatten().sort().values, planes.flatten().sort().values)  # a permutation
        assert member.valid(planes, g).all()  # no pixel is lost


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("objective", list(OBJECTIVES))
@pytest.mark.parametrize(("name", "problem"), FITTING)
def test_every_objective_is_finite_with_gradients_on_every_network(name, problem, objective):
    student, batch = network_on(name, problem)
    torch.manual_seed(2)
    teacher = NETWORKS[name](batch.physics().channels).eval()  # other weights: distillation has something to teach
    loss, logs = OBJECTIVES[objective]()(batch, student.train(), teacher)
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in logs.values())
    loss.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
