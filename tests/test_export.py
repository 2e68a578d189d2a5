"""stage=export: a dense or pruned checkpoint as a TorchScript file that loads and runs without spade-pl (nor
fastmri) importable and matches the checkpoint's outputs within 1e-5."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from spade_pl.errors import SpadeInputError
from spade_pl.pipeline import run

# runs the artifact in a fresh interpreter where importing spade_pl or fastmri fails
STANDALONE = """
import sys
sys.modules["spade_pl"] = None
sys.modules["fastmri"] = None
import torch
model = torch.jit.load(sys.argv[1])
example = torch.load(sys.argv[2], weights_only=True)
inputs = [example[name] for name in example["names"]]
with torch.no_grad():
    print(float((model(*inputs) - example["output"]).abs().max()))
"""


@pytest.mark.parametrize("pruned", [False, True])
def test_export_runs_standalone_and_matches_the_checkpoint(make_cfg, tmp_path, pruned):
    dense = run(make_cfg("stage=pretrain", "debug=fdr"))["checkpoint"]
    ckpt = run(make_cfg("stage=prune", f"ckpt_path={dense}", "debug=fdr"))["pruned_checkpoint"] if pruned else dense
    layout = "channels_last" if pruned else "auto"  # the trace keeps the priors' memory format
    record = run(make_cfg("stage=export", f"ckpt_path={ckpt}", f"benchmark.memory_format={layout}"))
    assert max(record["max_abs_error"].values()) <= 1e-5
    assert record["memory_format"]["chosen"] == layout or set(record["memory_format"]["candidates_ms"]) == {
        "contiguous",
        "channels_last",
    }
    folder = tmp_path / "run" / "export"
    assert json.loads((folder / "export.json").read_text())["parameters"] == record["parameters"]
    proc = subprocess.run(
        [sys.executable, "-c", STANDALONE, str(folder / "model.pt"), str(folder / "example.pt")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) <= 1e-5
    expected = torch.load(folder / "example.pt", weights_only=True)["output"]
    assert torch.isfinite(expected).all()


def test_export_of_a_super_resolution_network(make_cfg):
    dense = run(make_cfg("problem=sr", "stage=pretrain", "debug=fdr"))["checkpoint"]
    record = run(make_cfg("problem=sr", "stage=export", f"ckpt_path={dense}"))
    assert list(record["inputs"]) == ["y", "kernel", "mask"] and max(record["max_abs_error"].values()) <= 1e-5


def test_a_deq_is_refused_in_one_line(make_cfg):
    dense = run(make_cfg("network=deq", "stage=pretrain", "debug=fdr"))["checkpoint"]
    with pytest.raises(SpadeInputError, match="data-dependent number of iterations; allowed: unrolled networks"):
        run(make_cfg("network=deq", "stage=export", f"ckpt_path={dense}"))
