"""SPADE pruning semantics, structural equivalence, checkpoints, training after pruning, bad input."""

import copy
import re
import subprocess
import sys

import pytest
import torch
import torch_pruning as tp
from torch import nn

from spade_pl.core.errors import SpadeInputError
from spade_pl.models import E2EVarNet
from spade_pl.physics.mri import MultiCoilMRI
from spade_pl.pruning.counting import conv_widths
from spade_pl.pruning.prune import capture_prior_inputs, prune_network, replay_structure
from spade_pl.pruning.settings import PruneSettings, importance_object


def _inputs(coils=2, size=32, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, 1, 1, size, 1, dtype=torch.bool)
    mask[..., ::3, :] = True
    mask[..., size // 2 - 3 : size // 2 + 3, :] = True
    y = torch.randn(batch, coils, size, size, 2, generator=g) * mask
    return y, MultiCoilMRI(mask=mask, num_low_frequencies=6)


def _tiny(seed=0) -> E2EVarNet:
    torch.manual_seed(seed)
    return E2EVarNet(num_cascades=2, chans=6, pools=2, sens_chans=4, sens_pools=2)


def test_paper_varnet_semantics_at_half():
    """The paper's widths (18 chans, 4 pools; every cascade is pruned alike, so one cascade pins them)."""
    net = E2EVarNet(num_cascades=1, chans=18, pools=4, sens_chans=8, sens_pools=4)
    sens_before = copy.deepcopy(net.varnet.sens_net.state_dict())
    result = prune_network(net, *_inputs(size=32), PruneSettings(ratio=0.5))
    for i in range(1):
        unet = net.priors()[f"cascade{i}"]
        assert result.reports[f"cascade{i}"].widths_before == [18, 36, 72, 144, 288]
        assert conv_widths(unet, net.prior_output_layers()[f"cascade{i}"]) == [9, 18, 36, 72, 144]
        assert unet.up_conv[-1][-1].out_channels == 2  # final conv keeps the physics' 2 channels
        assert unet.down_sample_layers[0].layers[0].in_channels == 2  # input channels untouched
    sens_after = net.varnet.sens_net.state_dict()
    assert all(torch.equal(sens_before[k], sens_after[k]) for k in sens_before)  # sens net not pruned


def test_semantics_floor_per_group_and_dc_weights_untouched():
    net = _tiny()
    dc = [c.dc_weight.detach().clone() for c in net.varnet.cascades]
    prune_network(net, *_inputs(), PruneSettings(ratio=0.4))
    for name in ("cascade0", "cascade1"):
        # floor(C * 0.6) for C = 6, 12, 24
        assert conv_widths(net.priors()[name], net.prior_output_layers()[name]) == [3, 7, 14]
    assert conv_widths(net.priors()["sens"], net.prior_output_layers()["sens"]) == [4, 8, 16]
    assert all(torch.equal(a, c.dc_weight) for a, c in zip(dc, net.varnet.cascades, strict=True))


def test_ratio_zero_changes_nothing():
    net = _tiny()
    before = copy.deepcopy(net.state_dict())
    result = prune_network(net, *_inputs(), PruneSettings(ratio=0.0))
    assert result.structure["priors"] == {}
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_sensitivity_net_pruned_when_asked():
    net = _tiny()
    result = prune_network(net, *_inputs(), PruneSettings(ratio=0.5, include_sensitivity_net=True))
    assert "sens" in result.reports
    assert conv_widths(net.priors()["sens"], net.prior_output_layers()["sens"]) == [2, 4, 8]


def test_only_named_priors_are_pruned():
    net = _tiny()
    prune_network(net, *_inputs(), PruneSettings(ratio=0.5, priors=["cascade1"]))
    assert conv_widths(net.priors()["cascade0"], net.prior_output_layers()["cascade0"]) == [6, 12, 24]
    assert conv_widths(net.priors()["cascade1"], net.prior_output_layers()["cascade1"]) == [3, 6, 12]


def _zero_removed_channels(network, y, physics, settings):
    """Reference: the dense network with the channels SPADE removes zeroed (out-filters and their biases)."""
    names = settings.prior_names(network)
    inputs = capture_prior_inputs(network, y, physics, names)
    for name in names:
        prior = network.priors()[name]
        pruner = tp.pruner.BasePruner(
            prior,
            inputs[name],
            importance=importance_object(settings.importance),
            pruning_ratio=settings.ratio,
            ignored_layers=network.prior_output_layers()[name],
        )
        groups = [[(dep, list(idxs)) for dep, idxs in group] for group in pruner.step(interactive=True)]
        with torch.no_grad():
            for dep, idxs in (item for group in groups for item in group):
                layer = dep.target.module
                if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d) and pruner.DG.is_out_channel_pruning_fn(
                    dep.handler
                ):
                    out_dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
                    layer.weight.index_fill_(out_dim, torch.tensor(idxs), 0.0)
                    if layer.bias is not None:
                        layer.bias[idxs] = 0
    return network


def test_pruned_network_equals_dense_with_removed_channels_zeroed():
    settings = PruneSettings(ratio=0.5)
    y, physics = _inputs(batch=2)
    pruned = _tiny(seed=3)
    prune_network(pruned, y, physics, settings)
    masked = _zero_removed_channels(_tiny(seed=3), y, physics, settings)
    y2, physics2 = _inputs(batch=2, seed=7)  # fresh random inputs
    with torch.no_grad():
        out_pruned, out_masked = pruned.eval()(y2, physics2), masked.eval()(y2, physics2)
    assert torch.allclose(out_pruned, out_masked, atol=1e-5), (out_pruned - out_masked).abs().max()
    # and pruning did change the function: the dense network differs
    with torch.no_grad():
        dense_out = _tiny(seed=3).eval()(y2, physics2)
    assert not torch.allclose(dense_out, out_pruned, atol=1e-3)


def test_replayed_structure_reproduces_outputs_exactly():
    y, physics = _inputs()
    pruned = _tiny()
    result = prune_network(pruned, y, physics, PruneSettings(ratio=0.5, include_sensitivity_net=True))
    rebuilt = replay_structure(_tiny(seed=11), result.structure)
    rebuilt.load_state_dict(pruned.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(y, physics), pruned.eval()(y, physics))


def test_pruning_restores_train_mode():
    net = _tiny().train()
    prune_network(net, *_inputs(), PruneSettings(ratio=0.5))
    assert net.training and all(m.training for m in net.modules())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 1.0}, r"prune.ratio=1.0 is invalid; allowed: 0 <= ratio < 1"),
        ({"ratio": -0.1}, r"prune.ratio=-0.1 is invalid"),
        ({"importance": "taylor"}, r"prune.importance='taylor' is unknown; allowed: l1, l2, random"),
        ({"iterative_steps": 0}, r"prune.iterative_steps=0 is invalid"),
        ({"round_to": 0}, r"prune.round_to=0 is invalid"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(SpadeInputError, match=message):
        PruneSettings(**kwargs)


def test_ratio_that_empties_a_group_is_refused():
    net = _tiny()
    with pytest.raises(
        SpadeInputError, match=r"prune.ratio=0.9 would leave 0 of 6 channels in cascade0\..*ratio < 0.8333"
    ):
        prune_network(net, *_inputs(), PruneSettings(ratio=0.9))


def test_a_multiple_that_would_empty_a_group_is_one_line():
    with pytest.raises(
        SpadeInputError, match=r"prune.round_to=8 would round the 3 channels cascade0\.\S+ keeps down to 0"
    ):
        prune_network(_tiny(), *_inputs(), PruneSettings(ratio=0.5, round_to=8))


def test_unknown_prior_name_is_refused():
    with pytest.raises(
        SpadeInputError, match=r"prior name\(s\) \['cascade9'\] do not exist; this network has: cascade0"
    ):
        prune_network(_tiny(), *_inputs(), PruneSettings(priors=["cascade9"]))


def test_structure_that_does_not_fit_the_network_is_refused():
    result = prune_network(_tiny(), *_inputs(), PruneSettings(ratio=0.5))
    other = E2EVarNet(num_cascades=1, chans=6, pools=2, sens_chans=4, sens_pools=2)
    with pytest.raises(SpadeInputError, match=r"prior\(s\) \['cascade1'\] that this network does not have"):
        replay_structure(other, result.structure)


def _kept_weights(importance) -> dict[str, torch.Tensor]:
    net = _tiny()
    prune_network(net, *_inputs(), PruneSettings(ratio=0.5, importance=importance))
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_importance_takes_any_torch_pruning_class_by_target_and_the_shorthand_is_that_class():
    """``l1`` is torch-pruning's group magnitude importance with SPADE's arguments: spelled out as a
    ``_target_`` it keeps exactly the same channels; another class (LAMP) keeps other ones."""
    spelled = {
        "_target_": "torch_pruning.importance.GroupMagnitudeImportance",
        "p": 1,
        "group_reduction": "sum",
        "normalizer": None,
    }
    shorthand, explicit = _kept_weights("l1"), _kept_weights(spelled)
    assert shorthand.keys() == explicit.keys() and all(torch.equal(shorthand[k], explicit[k]) for k in shorthand)
    lamp = _kept_weights({"_target_": "torch_pruning.importance.LAMPImportance"})
    assert all(lamp[k].shape == shorthand[k].shape for k in shorthand)  # the same widths
    assert any(not torch.equal(lamp[k], shorthand[k]) for k in shorthand)  # other channels


@pytest.mark.parametrize(
    "importance, message",
    [
        ({"_target_": "torch.nn.Linear"}, "is not a torch-pruning importance class"),
        ({"_target_": "torch_pruning.importance.GroupTaylorImportance"}, "ranks channels by gradients"),
        ({"p": 1}, "is invalid; allowed: l1, l2, random, or {_target_:"),
    ],
)
def test_importance_classes_that_cannot_rank_here_are_one_line(importance, message):
    with pytest.raises(SpadeInputError, match=re.escape(message)):
        PruneSettings(importance=importance)


def test_priors_a_network_keeps_dense_are_left_alone_unless_asked():
    net = _tiny()
    assert net.dense_priors == ("sens",)
    assert PruneSettings().prior_names(net) == ["cascade0", "cascade1"]
    assert PruneSettings(include_sensitivity_net=True).prior_names(net) == ["cascade0", "cascade1", "sens"]


def test_importing_and_counting_leave_torch_prunings_op_registry_as_they_found_it():
    """Our counting rules are registered while we count and taken out after: a user's torch-pruning is unchanged
    by importing spade-pl or by a count."""
    code = """
import torch, torch_pruning as tp
before = dict(tp.utils.op_counter.MODULES_MAPPING)
import spade_pl.models, spade_pl.pruning.prune, spade_pl.benchmark.timing
from spade_pl.models import E2EVarNet
from spade_pl.pruning.counting import count_macs
assert dict(tp.utils.op_counter.MODULES_MAPPING) == before, "import"
net = E2EVarNet(num_cascades=1, chans=4, pools=2, sens_chans=2, sens_pools=2)
count_macs(net.priors()["cascade0"], torch.randn(1, 2, 16, 16))
assert dict(tp.utils.op_counter.MODULES_MAPPING) == before, "count"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_fast_instance_norm_and_transposed_convolutions_are_counted_as_what_they_compute():
    from spade_pl.models.varnet.instance_norm import GroupKernelInstanceNorm2d
    from spade_pl.pruning.counting import count_macs

    x = torch.randn(1, 4, 8, 8)
    plain = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.InstanceNorm2d(4))
    fast = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), GroupKernelInstanceNorm2d(4))
    assert count_macs(fast, x) == count_macs(plain, x) > count_macs(plain[0], x)
    up = torch.nn.ConvTranspose2d(
        4, 2, 2, stride=2, bias=False
    )  # every input pixel meets 2 x 2 x 2 weights per channel
    assert count_macs(up, x) == 4 * 8 * 8 * (2 * 2 * 2)
