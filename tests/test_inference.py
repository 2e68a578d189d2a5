"""The inference path: priors in the measured-fastest memory layout and the runtime, same outputs as eager."""

import re
from dataclasses import replace

import pytest
import torch

from spade_pl.benchmark.runtime import (
    choose_memory_format,
    constants_fixed,
    prepare_runtime,
    relative_difference,
    resolve_runtime,
    set_memory_format,
)
from spade_pl.core.errors import RunFailure, SpadeInputError
from spade_pl.models import DEQ, E2EVarNet, UnrolledHQS
from spade_pl.physics.mri import MultiCoilMRI
from spade_pl.physics.sr import Downsampling, make_kernel


def _mri(size: int = 16, coils: int = 3):
    torch.manual_seed(0)
    mask = torch.zeros(1, 1, 1, size, 1, dtype=torch.bool)
    mask[..., ::2, :] = True
    mask[..., size // 2 - 2 : size // 2 + 2, :] = True
    y = torch.randn(1, coils, size, size, 2) * mask
    return E2EVarNet(num_cascades=2, chans=4, pools=2, sens_chans=2, sens_pools=2).eval(), y, MultiCoilMRI(mask=mask)


def _sr(size: int = 16):
    torch.manual_seed(0)
    physics = Downsampling(kernel=make_kernel("gaussian", 2), scale=2)
    net = UnrolledHQS(iterations=2, channels=3, widths=[4, 8], blocks=1).eval()
    return net, physics.A(torch.rand(1, 3, size, size)), physics


@pytest.mark.parametrize("make", [_mri, _sr], ids=["e2e_varnet", "du_sr"])
def test_channels_last_priors_give_the_contiguous_outputs_within_1e_5(make):
    network, y, physics = make()
    with torch.no_grad():
        contiguous = network(y, physics)
        set_memory_format(network, "channels_last")
        channels_last = network(y, physics)
    convs = [m for p in network.priors().values() for m in p.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert relative_difference(channels_last, contiguous) <= 1e-5


@pytest.mark.parametrize("faster", ["contiguous", "channels_last"])
def test_auto_keeps_the_layout_measured_faster_and_reports_every_candidate(faster):
    network, y, physics = _mri()

    def stand_in_timer(calls):
        for call in calls.values():
            call()  # each candidate runs
        return {name: 0.001 if name == faster else 0.002 for name in calls}

    with torch.no_grad():
        chosen = choose_memory_format(network, y, physics, "auto", stand_in_timer)
    assert chosen["chosen"] == faster
    assert chosen["candidates_ms"] == {
        name: pytest.approx(1.0 if name == faster else 2.0) for name in chosen["candidates_ms"]
    }
    assert chosen["relative_difference"] <= 1e-5
    conv = next(m for m in network.priors()["cascade0"].modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) == (faster == "channels_last")


def test_a_fixed_layout_is_applied_without_timing():
    network, y, physics = _mri()
    assert choose_memory_format(network, y, physics, "channels_last", lambda calls: pytest.fail("timed")) == {
        "chosen": "channels_last"
    }


def test_auto_runtime_is_eager_on_a_cpu_and_cuda_graph_only_for_unrolled_networks_on_a_gpu():
    network, _, _ = _mri()
    deq = DEQ(feats=4, num_blocks=1, max_iter=3)
    assert resolve_runtime("auto", network, torch.device("cpu")) == "eager"
    assert resolve_runtime("auto", network, torch.device("cuda")) == "cuda_graph"
    assert resolve_runtime("auto", deq, torch.device("cuda")) == "eager"  # its solver stops on a host test


@pytest.mark.parametrize(
    ("choice", "device", "message"),
    [
        ("tensorrt", "cpu", "runtime='tensorrt' is unknown; allowed: auto, eager, cuda_graph"),
        ("cuda_graph", "cpu", "runtime=cuda_graph needs a CUDA device, not cpu; allowed here: eager"),
        ("cuda_graph", "cuda", "runtime=cuda_graph cannot capture DEQ: its solver decides on the host"),
    ],
)
def test_a_runtime_that_cannot_run_is_a_one_line_error(choice, device, message):
    deq = DEQ(feats=4, num_blocks=1, max_iter=3)
    with pytest.raises(SpadeInputError, match=re.escape(message)):
        resolve_runtime(choice, deq, torch.device(device))


def test_eager_is_the_reference_itself():
    network, y, physics = _mri()

    def forward():
        return network(y, physics)

    assert prepare_runtime(forward, "eager", torch.device("cpu")) == (forward, {"runtime": "eager"})


@pytest.mark.parametrize(("error", "accepted"), [(0.0, True), (1e-6, True), (1e-3, False)])
def test_a_prepared_runtime_must_reproduce_eager_within_the_tolerance(monkeypatch, error, accepted):
    import spade_pl.benchmark.runtime

    network, y, physics = _mri()
    # a stand-in capture (no GPU here) whose replay is off by ``error`` relative to the output's maximum
    monkeypatch.setattr(spade_pl.benchmark.runtime, "capture_cuda_graph", lambda f, device: lambda: f() * (1 + error))
    with torch.no_grad():
        if accepted:
            call, info = prepare_runtime(lambda: network(y, physics), "cuda_graph", torch.device("cpu"))
            assert info["runtime"] == "cuda_graph" and info["relative_difference"] == pytest.approx(error, abs=1e-7)
            assert torch.equal(call(), network(y, physics) * (1 + error))  # what is timed is the capture's replay
        else:
            with pytest.raises(RunFailure, match=r"runtime=cuda_graph changed the output by 1\.0e-03 .* <= 1e-05"):
                prepare_runtime(lambda: network(y, physics), "cuda_graph", torch.device("cpu"))


def test_fixed_acquisition_constants_become_python_ints_and_mixed_ones_are_refused():
    _, _, physics = _mri()
    fixed = constants_fixed(replace(physics, num_low_frequencies=torch.tensor([4, 4])))
    assert fixed.num_low_frequencies == 4 and isinstance(fixed.num_low_frequencies, int)
    with pytest.raises(SpadeInputError, match=r"num_low_frequencies=\[4, 6\] differs across the batch"):
        constants_fixed(replace(physics, num_low_frequencies=torch.tensor([4, 6])))
