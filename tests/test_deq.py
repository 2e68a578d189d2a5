"""DEQ (Anderson solver, EDSR prior, Jacobian-free backprop) and VarNet with given maps: counts, errors, pruning."""

import copy

import pytest
import torch
from torch import nn

from spade_pl.core.errors import RunFailure, SpadeInputError
from spade_pl.models import DEQ, EDSR, E2EVarNet, VarNetGivenMaps
from spade_pl.models.anderson import anderson
from spade_pl.models.deq import DEQNotConvergedWarning
from spade_pl.physics.base import COIL_MAPS
from spade_pl.physics.mri import MultiCoilMRI
from spade_pl.pruning.counting import conv_widths
from spade_pl.pruning.prune import prune_network
from spade_pl.pruning.settings import PruneSettings

# tests/ is not a package: pytest's default ("prepend") import mode puts this folder on sys.path, so the
# reference helper of test_pruning.py is imported from that module rather than copied.
from test_pruning import _zero_removed_channels

not_converged_ok = pytest.mark.filterwarnings("ignore::spade_pl.models.deq.DEQNotConvergedWarning")


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _maps(coils: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Random smooth-ish complex maps normalised so that sum_c |S_c|^2 = 1 (like ESPIRiT / the embedded data)."""
    maps = torch.randn(1, coils, size, size, 2, generator=generator)
    return maps / maps.pow(2).sum(dim=(1, 4), keepdim=True).sqrt()


def _inputs(coils=2, size=16, batch=1, seed=0, with_maps=True):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, 1, 1, size, 1, dtype=torch.bool)
    mask[..., ::3, :] = True
    mask[..., size // 2 - 2 : size // 2 + 2, :] = True
    maps = _maps(coils, size, g).expand(batch, -1, -1, -1, -1).contiguous() if with_maps else None
    physics = MultiCoilMRI(mask=mask, maps=maps, num_low_frequencies=4)
    x = torch.randn(batch, size, size, 2, generator=g)
    y = physics.A(x) if with_maps else torch.randn(batch, coils, size, size, 2, generator=g) * mask
    return y, physics


def _tiny_deq(seed=0, **kwargs) -> DEQ:
    torch.manual_seed(seed)
    return DEQ(**{"feats": 4, "num_blocks": 1, "max_iter": 30, **kwargs})


# --- Anderson acceleration ---------------------------------------------------------------------------------


def test_anderson_finds_the_fixed_point_of_a_contraction():
    b = torch.linspace(-1, 1, 3 * 4 * 5).reshape(3, 4, 5)
    f = lambda x: 0.5 * torch.cos(x) + b  # noqa: E731 (a contraction with factor 0.5)
    reference = torch.zeros_like(b)
    for _ in range(200):  # plain iteration, converged to float precision
        reference = f(reference)
    with torch.no_grad():
        x, stats = anderson(f, torch.zeros_like(b), tol=1e-6)
    assert stats["converged"] and isinstance(stats["converged"], bool)
    assert isinstance(stats["iterations"], int) and 2 <= stats["iterations"] < 15  # plain iteration needs ~20
    assert isinstance(stats["residual"], float) and stats["residual"] < 1e-6
    assert torch.allclose(x, reference, atol=1e-5)


def test_anderson_solves_each_batch_element_on_its_own():
    b = torch.tensor([[0.3], [-2.0]])
    f = lambda x: 0.5 * torch.cos(x) + b  # noqa: E731
    with torch.no_grad():
        both, _ = anderson(f, torch.zeros(2, 1), tol=1e-7)
        second, _ = anderson(lambda x: 0.5 * torch.cos(x) + b[1:], torch.zeros(1, 1), tol=1e-7)
    assert torch.allclose(both[1:], second, atol=1e-6)
    assert torch.allclose(both, f(both), atol=1e-6)


def test_anderson_reports_a_solve_that_did_not_converge():
    f = lambda x: 0.99 * x + 1  # noqa: E731 (slow: fixed point at 100)
    with torch.no_grad():
        _, stats = anderson(f, torch.zeros(2, 3), memory=1, max_iter=3)
    assert stats["iterations"] == 3 and not stats["converged"] and stats["residual"] > 1e-4


def test_a_non_finite_iterate_is_an_error_naming_the_iteration():
    calls = []

    def f(x):
        calls.append(1)
        return x * float("nan") if len(calls) == 3 else 0.5 * x + 1

    with pytest.raises(RunFailure, match=r"DEQ solver produced a non-finite iterate at iteration 3; "):
        anderson(f, torch.zeros(1, 4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_iter": 0}, r"network.model.max_iter=0 is invalid; allowed: >= 1"),
        ({"tol": 0.0}, r"network.model.tol=0.0 is invalid; allowed: > 0"),
        ({"tol": -1e-3}, r"network.model.tol=-0.001 is invalid; allowed: > 0"),
        ({"memory": 0}, r"network.model.memory=0 is invalid; allowed: >= 1"),
        ({"mixing": 0.0}, r"network.model.mixing=0.0 is invalid; allowed: 0 < mixing <= 1"),
    ],
)
def test_bad_solver_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(SpadeInputError, match=message):
        anderson(lambda x: x, torch.zeros(1, 2), **kwargs)
    with pytest.raises(SpadeInputError, match=message):
        DEQ(feats=2, num_blocks=0, **kwargs)  # the network refuses them when it is built, not at the first batch


# --- DEQ ---------------------------------------------------------------------------------------------------------


def test_deq_forward_returns_a_complex_image_and_logs_the_solver():
    net = _tiny_deq()
    y, physics = _inputs(batch=2)
    with torch.no_grad():
        x = net(y, physics)
    assert x.shape == (2, 16, 16, 2) and torch.isfinite(x).all()
    assert set(net.solver_stats) == {"iterations", "residual", "converged", "warm_started"}
    assert not net.solver_stats["warm_started"]  # no slice order given: every solve starts from A^H y
    assert net.solver_stats["converged"] and 1 <= net.solver_stats["iterations"] <= 30


def _adjacent_slices(size=16, coils=2):
    """Two measurements of one acquisition whose images differ by 2 %: adjacent slices of a volume."""
    g = torch.Generator().manual_seed(3)
    mask = torch.zeros(1, 1, 1, size, 1, dtype=torch.bool)
    mask[..., ::3, :] = True
    mask[..., size // 2 - 2 : size // 2 + 2, :] = True
    physics = MultiCoilMRI(mask=mask, maps=_maps(coils, size, g), num_low_frequencies=4)
    first = torch.randn(1, size, size, 2, generator=g)
    second = first + 0.02 * torch.randn(1, size, size, 2, generator=g)
    return physics, physics.A(first), 1.3 * physics.A(second)  # each slice normalised on its own


def test_a_warm_start_reaches_the_same_fixed_point_in_fewer_iterations():
    net = _tiny_deq(tol=1e-5, max_iter=60)
    physics, first, second = _adjacent_slices()
    with torch.no_grad():
        cold = net(second, physics)
        cold_iterations = net.solver_stats["iterations"]
        net.next_slice_of("volume.h5", 4)
        net(first, physics)
        net.next_slice_of("volume.h5", 5)
        warm = net(second, physics)
    assert net.solver_stats["warm_started"] and net.solver_stats["converged"]
    assert net.solver_stats["iterations"] < cold_iterations
    assert (warm - cold).abs().max() <= 1e-4 * cold.abs().max()


@pytest.mark.parametrize(
    "follow",
    [("volume.h5", 6), ("other.h5", 5), ("volume.h5", 4), None],
    ids=["a gap", "another volume", "the same slice again", "no order given"],
)
def test_only_the_next_slice_of_the_same_volume_starts_warm(follow):
    net = _tiny_deq()
    physics, first, second = _adjacent_slices()
    with torch.no_grad():
        net.next_slice_of("volume.h5", 4)
        net(first, physics)
        if follow is not None:
            net.next_slice_of(*follow)
        net(second, physics)
    assert not net.solver_stats["warm_started"]


def test_deq_backprop_goes_through_the_last_application_only():
    net = _tiny_deq()
    calls = {"with_grad": 0, "without_grad": 0}

    def count(_module, _args, output):
        calls["with_grad" if output.requires_grad else "without_grad"] += 1

    net.prior.register_forward_hook(count)
    out = net(*_inputs(batch=2))
    assert calls == {"with_grad": 1, "without_grad": net.solver_stats["iterations"]}
    out.pow(2).sum().backward()
    assert net.gamma.grad is not None and net.alpha.grad is not None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.prior.parameters())


def test_deq_warns_when_the_solver_does_not_converge():
    net = _tiny_deq(max_iter=1)
    with pytest.warns(DEQNotConvergedWarning, match=r"did not converge: 1 iterations, relative residual [0-9.e+-]+ >"):
        net(*_inputs())
    assert net.solver_stats["iterations"] == 1 and not net.solver_stats["converged"]


def test_deq_solver_keeps_the_prior_mode():
    net = _tiny_deq().train()
    modes = []
    net.prior.register_forward_pre_hook(lambda module, _args: modes.append(module.training))
    with torch.no_grad():
        net(*_inputs())
    assert modes and all(modes)


def test_paper_edsr_and_deq_have_the_reference_parameter_counts():
    assert _count(EDSR(feats=64, num_blocks=13)) == 999_426
    deq = DEQ(feats=64, num_blocks=13)
    # The reference's 999,429 = 999,426 + gamma + alpha + mu: its DEQ also registers the RED weight mu as a
    # parameter but never uses it in the DEQ's fixed-point map, so we do not reproduce it (no fake parameter).
    assert _count(deq) == 999_426 + 2
    assert list(deq.priors()) == ["prior"] and deq.prior_output_layers()["prior"] == [deq.prior.tail]


@pytest.mark.parametrize(
    ("network", "name"), [(lambda: _tiny_deq(), "deq"), (lambda: VarNetGivenMaps(1, 2, 1), "varnet")]
)
def test_networks_that_need_maps_explain_how_to_get_them(network, name):
    net = network()
    assert COIL_MAPS in net.needs_for(MultiCoilMRI)
    with pytest.raises(
        SpadeInputError,
        match=rf"^network={name} needs coil sensitivity maps with the data.*"
        r"python -m spade_pl.data.mri.espirit DATA_FOLDER",
    ):
        net(*_inputs(with_maps=False))


# --- VarNet with given maps ------------------------------------------------------------------------------------


def test_paper_varnet_with_given_maps_has_the_reference_parameter_count():
    net = VarNetGivenMaps(num_cascades=8, chans=18, pools=4)
    assert _count(net) == 19_634_712
    assert _count(net.varnet.cascades[0]) == 2_454_339
    assert list(net.priors()) == [f"cascade{i}" for i in range(8)]
    assert net.priors()["cascade3"] is net.varnet.cascades[3].model.unet
    assert all(layers[0].out_channels == 2 for layers in net.prior_output_layers().values())


def test_varnet_with_given_maps_is_e2e_varnet_with_its_maps_given():
    torch.manual_seed(0)
    e2e = E2EVarNet(num_cascades=2, chans=4, pools=2, sens_chans=2, sens_pools=2).eval()
    given = VarNetGivenMaps(num_cascades=2, chans=4, pools=2).eval()
    state = {k: v for k, v in e2e.state_dict().items() if not k.startswith("varnet.sens_net.")}
    given.load_state_dict(state)  # same parameter names as E2EVarNet's cascades
    y, physics = _inputs(coils=3, size=16, batch=2)
    with torch.no_grad():
        maps = e2e.estimate_maps(y, physics)
        expected = e2e(y, physics)
        out = given(y, physics.with_maps(maps))
    assert out.shape == (2, 16, 16, 2)
    assert torch.allclose(out, expected, atol=1e-6)


# --- pruning -------------------------------------------------------------------------------------------------


@not_converged_ok
def test_paper_deq_pruning_semantics_at_half():
    net = DEQ(feats=64, num_blocks=13, max_iter=2)
    scalars = (net.gamma.detach().clone(), net.alpha.detach().clone())
    result = prune_network(net, *_inputs(size=16), PruneSettings(ratio=0.5))
    prior = net.prior
    assert result.reports["prior"].widths_before == [64]
    convs = [m for m in prior.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 + 2 * 13 + 1
    assert all(c.out_channels == 32 for c in convs if c is not prior.tail)
    assert all(c.in_channels == 32 for c in convs if c is not prior.head)
    assert prior.head.in_channels == 2 and prior.tail.out_channels == 2  # the physics' channels stay
    assert conv_widths(prior, net.prior_output_layers()["prior"]) == [32]
    assert torch.equal(net.gamma, scalars[0]) and torch.equal(net.alpha, scalars[1])
    with torch.no_grad():
        assert net(*_inputs(size=16)).shape == (1, 16, 16, 2)


@not_converged_ok
def test_pruned_edsr_equals_dense_edsr_with_removed_channels_zeroed():
    settings = PruneSettings(ratio=0.5)
    y, physics = _inputs(batch=2)
    pruned = _tiny_deq(seed=3, feats=8, num_blocks=3, max_iter=3)
    dense = copy.deepcopy(pruned)
    prune_network(pruned, y, physics, settings)
    masked = _zero_removed_channels(copy.deepcopy(dense), y, physics, settings)
    x = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(7))  # a fresh input for the prior alone
    with torch.no_grad():
        out_pruned, out_masked, out_dense = pruned.prior.eval()(x), masked.prior.eval()(x), dense.prior.eval()(x)
    assert pruned.prior.head.out_channels == 4
    assert torch.allclose(out_pruned, out_masked, atol=1e-5), (out_pruned - out_masked).abs().max()
    assert not torch.allclose(out_dense, out_pruned, atol=1e-3)  # pruning did change the function
