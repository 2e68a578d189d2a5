"""Depth pruning: which stages go (measured, uniform, last), how many are kept, what is refused, and what the
report and results say. That a removed stage leaves the network built without it, and that depth-pruned networks
survive save, load, replay and export, is in test_contracts.py and test_export.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from conftest import sr_batch
from spade_pl.core.errors import SpadeInputError
from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.base import Physics
from spade_pl.pruning.depth import choose_stages, kept_stage_count
from spade_pl.pruning.prune import prune_network
from spade_pl.pruning.settings import PruneSettings
from spade_pl.reporting.report import pruning_markdown

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from custom_network import UnrolledDnCNN  # noqa: E402


def stages_network(stages: int) -> UnrolledDnCNN:
    torch.manual_seed(0)
    return UnrolledDnCNN(channels=1, iterations=stages, features=8, depth=3)


def test_measured_importance_removes_the_stage_that_changes_the_output_least():
    batch = sr_batch()
    network = stages_network(3)
    with torch.no_grad():  # iteration 1 does nothing: no gradient step, a denoiser that predicts no noise
        network.step_sizes[1] = 0
        network.denoisers[1].tail.weight.zero_()
        network.denoisers[1].tail.bias.zero_()
    settings = PruneSettings(ratio=0.0, depth=0.3, depth_importance="measured")  # keeps 2 of 3
    assert choose_stages(network, batch.y, batch.physics(), settings) == [0, 2]
    with torch.no_grad():  # now iteration 2 does nothing instead, and 1 works again
        network.denoisers[1].tail.weight.normal_()
        network.step_sizes[1] = 1
        network.step_sizes[2] = 0
        network.denoisers[2].tail.weight.zero_()
        network.denoisers[2].tail.bias.zero_()
    assert choose_stages(network, batch.y, batch.physics(), settings) == [0, 1]


@pytest.mark.parametrize(
    ("importance", "stages", "depth", "kept"),
    [
        ("uniform", 8, 0.5, [0, 2, 5, 7]),
        ("uniform", 4, 0.75, [3]),
        ("last", 8, 0.5, [0, 1, 2, 3]),
        ("last", 3, 0.5, [0]),
    ],
)
def test_baseline_importances_keep_evenly_spaced_or_the_first_stages(importance, stages, depth, kept):
    batch = sr_batch()
    settings = PruneSettings(ratio=0.0, depth=depth, depth_importance=importance)
    assert choose_stages(stages_network(stages), batch.y, batch.physics(), settings) == kept


def test_depth_keeps_the_floor_of_the_remaining_fraction_and_refuses_to_keep_none():
    assert [kept_stage_count(stages_network(8), d) for d in (0.0, 0.25, 0.5, 0.7, 0.875)] == [8, 6, 4, 2, 1]
    with pytest.raises(SpadeInputError, match=r"^prune.depth=0.6 would leave 0 of the 2 stages of UnrolledDnCNN"):
        kept_stage_count(stages_network(2), 0.6)


class NoStages(MBDLNetwork):
    """A network that declares no removable stages."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, y: Tensor, physics: Physics) -> Tensor:
        return physics.from_channels(self.conv(physics.to_channels(physics.data_term(y).init())))

    def priors(self) -> dict[str, nn.Module]:
        return {"conv": self.conv}

    def prior_output_layers(self) -> dict[str, list[nn.Module]]:
        return {"conv": [self.conv]}


def test_a_network_that_declares_no_stages_is_refused_in_one_line():
    batch = sr_batch()
    with pytest.raises(SpadeInputError, match=r"^prune.depth=0.5 needs removable stages and NoStages declares none"):
        prune_network(NoStages(), batch.y, batch.physics(), PruneSettings(ratio=0.0, depth=0.5))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"depth": 1.0}, r"prune.depth=1.0 is invalid; allowed: 0 <= depth < 1"),
        ({"depth": -0.1}, r"prune.depth=-0.1 is invalid"),
        ({"depth": 0.5, "depth_importance": "bogus"}, r"prune.depth_importance='bogus' is unknown; allowed: measured"),
    ],
)
def test_bad_depth_settings_are_one_line(values, message):
    with pytest.raises(SpadeInputError, match=message):
        PruneSettings(**values)


def test_the_report_shows_removed_stages_as_removed_priors_and_names_the_kept_ones():
    batch = sr_batch()
    network = stages_network(4)
    result = prune_network(
        network, batch.y, batch.physics(), PruneSettings(ratio=0.5, depth=0.5, depth_importance="last")
    )
    assert list(network.priors()) == ["dncnn0", "dncnn1"]  # the kept stages keep their names
    removed = result.reports["dncnn3"]
    assert (removed.widths_after, removed.params_after, removed.macs_after) == ([], 0, 0)
    assert removed.params_before == result.reports["dncnn0"].params_before > result.reports["dncnn0"].params_after > 0
    markdown = pruning_markdown(result.reports, result.network_params, result.structure["depth"])
    assert "| dncnn3 | 8 → removed | 737 → 0 |" in markdown and "Stages kept: 0, 1 of 0..3 (2 of 4)" in markdown


def test_the_whole_job_removes_a_cascade_fine_tunes_and_reports_it(make_cfg, tmp_path):
    """debug=limit: one fine-tuning step, which saves and reloads the depth-pruned checkpoint as every job does."""
    from spade_pl.job.pipeline import run

    job = ("debug=limit", "finetune=distill", "prune.depth=0.5", "benchmark.repeats=1", "benchmark.warmup=0")
    results = run(make_cfg(*job))
    assert results["depth"] == {"stages": 2, "kept": results["depth"]["kept"]} and len(results["depth"]["kept"]) == 1
    removed = next(name for name, rep in results["pruning"].items() if rep["widths_after"] == [])
    assert results["pruning"][removed]["macs_after"] == 0 and removed.startswith("cascade")
    bench = (tmp_path / "run" / "benchmark.md").read_text()
    assert f"MACs per call, {removed} |" in bench and "| removed |" in bench
    summary = results["summary"]["cap"]
    assert f"unpruned prior {removed}" not in summary["untouched_macs"]
    assert "Stages kept:" in (tmp_path / "run" / "results.md").read_text()


def test_depth_alone_removes_stages_and_leaves_the_channels(make_cfg):
    """docs Pruning: ``prune.depth=0.5 prune.ratio=0 prune.depth_importance=uniform``, tiny."""
    from spade_pl.job.pipeline import run

    job = ("stage=benchmark", "prune.depth=0.5", "prune.ratio=0", "prune.depth_importance=uniform")
    results = run(make_cfg(*job, "benchmark.repeats=1", "benchmark.warmup=0"))
    assert results["pruned"]["macs_per_prior_call"] == {
        name: macs for name, macs in results["dense"]["macs_per_prior_call"].items() if name in ("cascade1", "sens")
    }
