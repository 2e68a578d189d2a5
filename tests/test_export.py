"""stage=export: a dense or pruned checkpoint as a TorchScript file that loads and runs without spade-pl (nor
fastmri) importable and matches the checkpoint's outputs within 1e-5; as a fastMRI VarNet state_dict that fastMRI
alone runs; as weights plus pruning history that the dense class and torch-pruning rebuild."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spade_pl.job.pipeline import prepare, run
from spade_pl.pruning.counting import count_params
from spade_pl.weights import onnx as onnx_format

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# runs an artifact in a fresh interpreter where importing spade_pl or fastmri fails, loaded as its format says
STANDALONE = """
import sys
sys.modules["spade_pl"] = None
sys.modules["fastmri"] = None
import torch
path = sys.argv[1]
if path.endswith("_aoti.pt2"):
    model = torch._inductor.aoti_load_package(path)
elif path.endswith(".pt2"):
    model = torch.export.load(path).module()
elif path.endswith(".onnx"):
    import onnxruntime
    runner = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in runner.get_inputs()]
    model = lambda *x: torch.from_numpy(runner.run(None, {n: t.numpy() for n, t in zip(names, x)})[0])
else:
    model = torch.jit.load(path)
example = torch.load(sys.argv[2], weights_only=True)
inputs = [example[name] for name in example["names"]]
with torch.no_grad():
    print(float((model(*inputs) - example["output"]).abs().max()))
"""
LOADERS = {"pt2": lambda path: torch.export.load(path).module(), "torchscript": torch.jit.load}


def run_standalone(artifact: str, example: str) -> float:
    """The largest |output - expected| of ``artifact`` on ``example``, run where spade_pl cannot be imported."""
    proc = subprocess.run([sys.executable, "-c", STANDALONE, artifact, example], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return float(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("pruned", "form"), [(False, "pt2"), (True, "pt2"), (True, "torchscript")])
def test_export_runs_standalone_and_matches_the_checkpoint(make_cfg, tmp_path, pruned, form, pretrained):
    dense = pretrained("debug=fdr")
    ckpt = run(make_cfg("stage=prune", f"ckpt_path={dense}", "debug=fdr"))["pruned_checkpoint"] if pruned else dense
    layout = "channels_last" if pruned else "auto"  # the capture keeps the priors' memory format
    overrides = ("stage=export", f"ckpt_path={ckpt}", f"benchmark.memory_format={layout}", f"export.formats=[{form}]")
    exported = run(make_cfg(*overrides))
    assert set(exported) - {"state_dict", "library_format"} == {form}
    record = exported[form]["artifacts"]["model"]
    assert max(record["max_abs_error"].values()) <= 1e-5
    chosen = exported[form]["memory_format"]
    assert chosen["chosen"] == layout or set(chosen["candidates_ms"]) == {"contiguous", "channels_last"}
    folder = tmp_path / "run" / "export"
    saved = json.loads((folder / "export.json").read_text())[form]["artifacts"]["model"]
    assert saved["parameters"] == record["parameters"]
    assert run_standalone(record["artifact"], record["example"]) <= 1e-5
    example = torch.load(record["example"], weights_only=True)
    assert torch.isfinite(example["output"]).all()
    # the artifact is the checkpoint's network, checked against it loaded independently (not the exporter's own
    # output): the same parameters and, on the first test slice, the same output
    ctx = prepare(make_cfg("stage=test", f"ckpt_path={ckpt}"))
    network, structure = ctx.networks.load(ckpt)
    assert (structure is not None) == pruned
    artifact = LOADERS[form](record["artifact"])
    assert sum(p.numel() for p in artifact.parameters()) == record["parameters"] == count_params(network)
    if pruned:
        assert record["parameters"] < count_params(ctx.networks.dense(dense))
    batch = next(iter(ctx.datamodule.test_dataloader()))
    with torch.no_grad():
        eager = network.eval()(batch.y, batch.physics())
        traced = artifact(*[example[name] for name in example["names"]])
    assert torch.allclose(traced, eager, atol=1e-5 * float(eager.abs().max()))


def test_the_compiled_and_onnx_formats_run_standalone_and_the_onnx_priors_rebuild_the_network(
    make_cfg, tmp_path, pretrained
):
    """AOTInductor packages the whole unrolled network; ONNX holds each prior (the FFTs stay in torch): each file
    runs where spade_pl cannot be imported, and the network with its priors run by ONNX Runtime reproduces the
    pruned checkpoint."""
    dense = pretrained("debug=fdr")
    pruned = run(make_cfg("stage=prune", f"ckpt_path={dense}", "debug=fdr"))["pruned_checkpoint"]
    exported = run(make_cfg("stage=export", f"ckpt_path={pruned}", "export.formats=[aoti,onnx]"))
    assert list(exported["aoti"]["artifacts"]) == ["model"] and "constants" in exported["aoti"]
    assert set(exported["onnx"]["artifacts"]) == {"cascade0", "cascade1", "sens"}
    assert "data consistency" in exported["onnx"]["not_captured"]
    for form in ("aoti", "onnx"):
        records = list(exported[form]["artifacts"].values())
        assert all(max(record["max_abs_error"].values()) <= 1e-5 for record in records)
        assert run_standalone(records[0]["artifact"], records[0]["example"]) <= 1e-5  # (each prior alike: one)
    ctx = prepare(make_cfg("stage=test", f"ckpt_path={pruned}"))
    network = ctx.networks.load(pruned)[0].eval()
    batch = next(iter(ctx.datamodule.test_dataloader()))
    with torch.no_grad():
        eager = network(batch.y, batch.physics())
        for name, prior in network.priors().items():
            prior.forward = onnx_format.load(Path(exported["onnx"]["artifacts"][name]["artifact"]).read_bytes())
        rebuilt = network(batch.y, batch.physics())
    assert torch.allclose(rebuilt, eager, atol=1e-5 * float(eager.abs().max()))


def test_export_of_a_super_resolution_network(make_cfg, pretrained):
    dense = pretrained("problem=sr", "debug=fdr")
    record = run(make_cfg("problem=sr", "stage=export", f"ckpt_path={dense}"))["pt2"]["artifacts"]["model"]
    assert list(record["inputs"]) == ["y", "kernel"] and max(record["max_abs_error"].values()) <= 1e-5
    assert run_standalone(record["artifact"], record["example"]) <= 1e-5


def test_a_deq_exports_its_prior_and_its_solver_stays_python(make_cfg, tmp_path, capsys, pretrained):
    """The solver calls the prior a data-dependent number of times: the prior is what is captured, on the input it
    receives, and it runs standalone; the DEQ with its prior replaced by the artifact reproduces the checkpoint."""
    dense = pretrained("network=deq", "debug=fdr")
    record = run(make_cfg("network=deq", "stage=export", f"ckpt_path={dense}", "export.formats=[pt2,torchscript]"))
    assert "library_format" not in record and (tmp_path / "run" / "export" / "state_dict.pt").is_file()
    for form in ("pt2", "torchscript"):
        assert list(record[form]["artifacts"]) == ["prior"] and "solver" in record[form]["not_captured"]
        prior = record[form]["artifacts"]["prior"]
        assert run_standalone(prior["artifact"], prior["example"]) <= 1e-5
    assert not (tmp_path / "run" / "export" / "model.pt2").exists()
    assert "its fixed-point solver, Python that calls the priors" in capsys.readouterr().out
    ctx = prepare(make_cfg("network=deq", "stage=test", f"ckpt_path={dense}"))
    network, _ = ctx.networks.load(dense)
    batch = next(iter(ctx.datamodule.test_dataloader()))
    with torch.no_grad():
        eager = network.eval()(batch.y, batch.physics())
        network.prior.forward = LOADERS["pt2"](record["pt2"]["artifacts"]["prior"]["artifact"])  # the solver calls it
        rebuilt = network(batch.y, batch.physics())
    assert torch.allclose(rebuilt, eager, atol=1e-4 * float(eager.abs().max()))


# runs a fastMRI VarNet state_dict with fastmri alone (spade_pl cannot be imported)
FASTMRI_ALONE = """
import json, sys
sys.modules["spade_pl"] = None
import torch
from fastmri.models import VarNet
record = json.load(open(sys.argv[1]))["library_format"]
assert record["constructor"] == "fastmri.models.VarNet"
model = VarNet(**record["arguments"]).eval()
model.load_state_dict(torch.load(record["file"], weights_only=True))
case = torch.load(sys.argv[2], weights_only=True)
with torch.no_grad():
    output = model(case["y"], case["mask"], case["num_low_frequencies"])
print(sum(p.numel() for p in model.parameters()), float((output - case["rss"]).abs().max()))
"""


@pytest.mark.parametrize(("depth", "cascades"), [(0.0, 2), (0.5, 1)])
def test_a_pruned_e2e_varnet_exports_to_a_fastmri_varnet_that_fastmri_alone_runs(
    make_cfg, tmp_path, capsys, pretrained, depth, cascades
):
    """s = 0.5 of chans 4 keeps chans 2 at every level, and depth 0.5 one of the two cascades: exactly fastmri's
    VarNet(num_cascades=K, chans=2)."""
    rss = "+network.model.output=rss"
    dense = pretrained("debug=fdr", rss)
    pruning = ("stage=prune", f"ckpt_path={dense}", "debug=fdr", rss, f"prune.depth={depth}")
    pruned = run(make_cfg(*pruning))["pruned_checkpoint"]
    export = make_cfg("stage=export", f"ckpt_path={pruned}", rss)
    record = run(export)
    arguments = dict(num_cascades=cascades, sens_chans=2, sens_pools=2, chans=2, pools=2)
    assert record["library_format"]["arguments"] == arguments
    assert f"a plain state_dict of fastmri.models.VarNet(num_cascades={cascades}" in capsys.readouterr().out
    r = prepare(export)
    network = r.networks.load(pruned)[0].eval()
    batch = next(iter(r.datamodule.test_dataloader()))
    with torch.no_grad():
        expected = network(batch.y, batch.physics())[..., 0]
    case = {"y": batch.y, "mask": batch.mask, "num_low_frequencies": int(batch.num_low_frequencies[0]), "rss": expected}
    torch.save(case, tmp_path / "case.pt")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            FASTMRI_ALONE,
            str(tmp_path / "run" / "export" / "export.json"),
            str(tmp_path / "case.pt"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    params, error = proc.stdout.split()
    assert int(params) == sum(p.numel() for p in network.parameters()) and float(error) <= 1e-5


def test_widths_that_are_no_fastmri_varnet_say_which_ratios_are(make_cfg, pretrained):
    """s = 0.3 of chans 4 keeps 2, 5, 11 channels at the three levels: no VarNet(chans=...) has those."""
    dense = pretrained("debug=fdr")
    pruned = run(make_cfg("stage=prune", f"ckpt_path={dense}", "debug=fdr", "prune.ratio=0.3"))["pruned_checkpoint"]
    record = run(make_cfg("stage=export", f"ckpt_path={pruned}"))
    reason = record["library_format"]["not_written"]
    assert (
        "not those of a fastMRI VarNet" in reason
        and "ratios that keep one for chans 4, 2 pools: 0.5 (chans 2)" in reason
    )
    assert max(record["pt2"]["artifacts"]["model"]["max_abs_error"].values()) <= 1e-5  # the program is still written


# the docs' rebuild lines (export_weights.REBUILD) in a fresh interpreter, with the dense class named by the config
REBUILD_RUN = """
import sys, importlib, torch
sys.path.insert(0, sys.argv[3])
saved = torch.load(sys.argv[1], weights_only=True)
config = dict(saved["spade_pl_network"])
module, name = config.pop("_target_").rsplit(".", 1)
DenseClass, arguments = getattr(importlib.import_module(module), name), config
exec(sys.argv[2].replace("export/state_dict.pt", sys.argv[1]))
case = torch.load(sys.argv[4], weights_only=False)
with torch.no_grad():
    print(float((network.eval()(case["y"], case["physics"]) - case["output"]).abs().max()))
"""


@pytest.mark.parametrize("network", ["e2e_varnet", "own"])
def test_the_pruned_network_rebuilds_from_its_dense_class_and_the_pruning_history(
    make_cfg, tmp_path, network, pretrained
):
    from spade_pl.weights.export import REBUILD

    own = (
        "problem=sr",
        "network=custom",
        "network.model={_target_: custom_network.UnrolledDnCNN, channels: 1, iterations: 2, features: 8, depth: 3}",
    )
    extra = own if network == "own" else ()
    sys.path.insert(0, str(EXAMPLES))
    try:
        dense = pretrained(*extra, "debug=fdr")
        pruning = ("stage=prune", f"ckpt_path={dense}", "debug=fdr", "prune.depth=0.5")  # cascades and channels
        pruned = run(make_cfg(*extra, *pruning))["pruned_checkpoint"]
        export = make_cfg(*extra, "stage=export", f"ckpt_path={pruned}")
        run(export)
        r = prepare(export)
        model = r.networks.load(pruned)[0].eval()
        batch = next(iter(r.datamodule.test_dataloader()))
        with torch.no_grad():
            output = model(batch.y, batch.physics())
        torch.save({"y": batch.y, "physics": batch.physics(), "output": output}, tmp_path / "case.pt")
        state = tmp_path / "run" / "export" / "state_dict.pt"
        proc = subprocess.run(
            [sys.executable, "-c", REBUILD_RUN, str(state), REBUILD, str(EXAMPLES), str(tmp_path / "case.pt")],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert float(proc.stdout.strip().splitlines()[-1]) <= 1e-6
        # and spade-pl reads the exported file back through ckpt_path, pruned structure included
        network, structure = prepare(export).networks.load(state)
        assert structure is not None
        assert sum(p.numel() for p in network.parameters()) == sum(p.numel() for p in model.parameters())
    finally:
        sys.path.remove(str(EXAMPLES))
        sys.modules.pop("custom_network", None)
