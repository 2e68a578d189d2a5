"""The runtime table (benchmark.runtimes): every runtime deploys the network it is given (its output matches that
network in eager PyTorch), is timed dense and pruned in one process, and the fastest pruned deployment is named;
a runtime whose dependencies are missing is one line naming the extra."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from conftest import mri_batch
from spade_pl.core.errors import SpadeInputError
from spade_pl.job.pipeline import prepare, run
from spade_pl.weights.formats import chosen_formats
from spade_pl.weights.runtimes import AGREEMENT, deploy


def test_the_runtime_table_deploys_each_network_in_every_runtime_and_names_the_fastest(make_cfg, tmp_path):
    """A DEQ: compile and aoti take its prior (the solver stays Python), onnxruntime its prior in ONNX Runtime."""
    timing = ("benchmark.repeats=2", "benchmark.warmup=0", "benchmark.memory_format=contiguous")
    runtimes = "benchmark.runtimes=[compile,aoti,onnxruntime]"
    result = run(make_cfg("network=deq", "stage=benchmark", "benchmark.volume=false", *timing, runtimes))
    table = result["runtimes"]
    assert [row["runtime"] for row in table["rows"]] == ["eager", "compile", "aoti", "onnxruntime"]
    for row in table["rows"]:
        # each timed call is the network it is named for: its output is that network's eager output
        assert row["relative_difference"] <= 1e-4, row
        assert row["dense_ms"] > 0 and row["pruned_ms"] > 0
        assert row["speedup"] == pytest.approx(row["dense_ms"] / row["pruned_ms"])
        assert (min(row["prepare_s"].values()) > 0.01) == (row["runtime"] != "eager")  # a compile is not free
    eager = table["rows"][0]
    for row in table["rows"]:
        assert row["pruned_vs_dense_eager"] == pytest.approx(eager["dense_ms"] / row["pruned_ms"])
    fastest = table["fastest_pruned"]
    assert table["not_considered"] == []
    assert fastest["pruned_ms"] == min(row["pruned_ms"] for row in table["rows"])
    text = (tmp_path / "run" / "benchmark.md").read_text()
    assert f"Fastest pruned deployment: {fastest['runtime']}, {fastest['pruned_ms']:.1f} ms" in text
    assert json.loads((tmp_path / "run" / "benchmark.json").read_text())["runtimes"] == table


@pytest.mark.parametrize("runtime", ["compile", "onnxruntime"])
def test_an_unrolled_network_is_deployed_whole_or_by_its_priors_and_left_as_it_was(make_cfg, runtime):
    """compile takes an E2E-VarNet whole (its FFTs and data consistency too), onnxruntime its priors; either way
    the output is eager's and the network handed in is not changed."""
    network = prepare(make_cfg("stage=test")).networks.new().eval()
    batch = mri_batch(size=32, coils=4)
    y, physics = batch.y, batch.physics()
    with torch.no_grad():
        eager = network(y, physics)
        call, prepare_s = deploy(network, y, physics, runtime)
        deployed = call()
        assert torch.equal(network(y, physics), eager)  # the deployment is a copy
    assert prepare_s > 0 and float((deployed - eager).abs().max() / eager.abs().max()) <= AGREEMENT
    assert all("forward" not in vars(prior) for prior in network.priors().values())


def test_a_format_or_runtime_without_its_extra_is_one_line_naming_it(monkeypatch, make_cfg):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(SpadeInputError, match=r"export.formats=\[onnx\] needs onnxruntime .*spade-pl\[deploy\]"):
        chosen_formats(["pt2", "onnx"])
    with pytest.raises(SpadeInputError, match=r"benchmark.runtimes=\[onnxruntime\] needs onnxruntime"):
        run(make_cfg("stage=benchmark", "benchmark.runtimes=[onnxruntime]"))
