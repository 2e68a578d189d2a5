"""prune.target_speedup: the smallest ratio measured to reach a speed-up, by bisection over the ratio."""

from __future__ import annotations

import math

import pytest

from spade_pl.benchmark.settings import BenchmarkSettings
from spade_pl.core.atomic_io import atomic_write_json
from spade_pl.core.errors import RunFailure, SpadeInputError
from spade_pl.job.pipeline import run
from spade_pl.job.stages.structure_search import StructureSearch
from spade_pl.pruning.settings import PruneSettings
from spade_pl.pruning.target import MAX_RATIO, RESOLUTION, largest_ratio, smallest_ratio_reaching


def speedup_of_macs(ratio: float) -> float:
    """A stand-in device where time follows the MACs: (1 - ratio)^2 of them remain."""
    return 1 / (1 - ratio) ** 2


def test_bisection_finds_the_smallest_ratio_within_the_resolution():
    search = smallest_ratio_reaching(2.0, speedup_of_macs)
    exact = 1 - 2**-0.5  # 0.2929: where (1 - r)^-2 = 2
    assert exact <= search.ratio <= exact + RESOLUTION
    assert speedup_of_macs(search.ratio) >= 2.0
    assert search.measured[0] == (MAX_RATIO, speedup_of_macs(MAX_RATIO))
    assert len(search.measured) <= 9  # a handful of measurements, not a sweep
    assert search.measured[-1][0] == search.ratio  # the choice was timed twice


def test_a_lucky_timing_is_not_accepted():
    """The first timing of each ratio below 0.5 is lucky (5x); timed again it shows its true speed-up."""
    seen: set[float] = set()

    def noisy(ratio: float) -> float:
        lucky = ratio < 0.5 and ratio not in seen
        seen.add(ratio)
        return 5.0 if lucky else speedup_of_macs(ratio)

    search = smallest_ratio_reaching(4.0, noisy)  # truly reached from 0.5 up
    assert 0.5 <= search.ratio <= 0.5 + RESOLUTION
    assert speedup_of_macs(search.ratio) >= 4.0


def test_an_unreachable_target_is_one_line():
    with pytest.raises(RunFailure, match=r"prune.target_speedup=500 is out of reach .* measured 100.00x"):
        smallest_ratio_reaching(500, speedup_of_macs)


def test_a_resumed_search_reuses_the_ratio_its_run_folder_chose(tmp_path):
    """Timing noise must not change the structure of a job half done: a resumed run reads its folder's choice and
    times nothing (``tests/test_resume.py`` kills and resumes a real job that measured ``round_to``)."""
    chosen = smallest_ratio_reaching(2.0, speedup_of_macs)
    atomic_write_json(tmp_path / "target_speedup.json", chosen.as_dict())

    def no_timing():
        raise AssertionError("a resumed search timed again")

    settings = PruneSettings(ratio=0.0, target_speedup=2.0)
    search = StructureSearch(settings, BenchmarkSettings(), no_timing, tmp_path, resumed=True)
    assert search.choose_ratio(dense=None).as_dict() == chosen.as_dict() and search.settings.ratio == chosen.ratio
    with pytest.raises(AssertionError, match="timed again"):  # a fresh run measures
        StructureSearch(settings, BenchmarkSettings(), no_timing, tmp_path, resumed=False).choose_ratio(dense=None)


def test_the_job_prunes_at_the_measured_ratio_and_reports_it(make_cfg, monkeypatch, tmp_path, pretrained):
    import spade_pl.job.stages.benchmark
    import spade_pl.job.stages.structure_search

    def timed_as_macs(dense, pruned, batch, settings):  # deterministic timing for the test
        params = [sum(p.numel() for p in net.priors()["cascade0"].parameters()) for net in (dense, pruned)]
        return {"speedup_forward": params[0] / params[1]}

    monkeypatch.setattr(spade_pl.job.stages.structure_search, "benchmark_pair", timed_as_macs)
    monkeypatch.setattr(spade_pl.job.stages.benchmark, "benchmark_pair", timed_as_macs)
    dense = pretrained("debug=fdr")
    out = run(make_cfg("stage=prune", f"ckpt_path={dense}", "debug=fdr", "prune.target_speedup=3.0", "prune.ratio=0"))
    search = out["target_speedup"]
    assert search["target"] == 3.0 and 0 < search["ratio"] < MAX_RATIO
    pruned = out["pruning"]["cascade0"]  # the job pruned at the ratio the search chose
    assert pruned["widths_after"] == [math.floor(w * (1 - search["ratio"])) for w in pruned["widths_before"]]
    assert "Latency target 3.00x on cpu: prune.ratio=" in (tmp_path / "run" / "results.md").read_text()


def test_target_speedup_is_refused_under_ddp(make_cfg):
    with pytest.raises(SpadeInputError, match="prune.target_speedup needs one process"):
        run(make_cfg("stage=benchmark", "prune.target_speedup=2", "trainer.devices=2"))


def test_the_search_never_prunes_a_group_to_nothing():
    for width in (2, 3, 4, 7, 18):
        ratio = largest_ratio([width, 64])
        assert int(width * (1 - ratio)) >= 1 and ratio <= MAX_RATIO


def test_the_benchmark_stage_writes_the_search_into_its_files(make_cfg, monkeypatch, tmp_path):
    import json

    import spade_pl.job.stages.benchmark
    import spade_pl.job.stages.structure_search

    def timed_as_macs(dense, pruned, batch, settings):
        params = [sum(p.numel() for p in net.parameters()) for net in (dense, pruned)]
        return {"speedup_forward": params[0] / params[1]}

    monkeypatch.setattr(spade_pl.job.stages.structure_search, "benchmark_pair", timed_as_macs)
    monkeypatch.setattr(spade_pl.job.stages.benchmark, "benchmark_pair", timed_as_macs)
    monkeypatch.setattr(spade_pl.job.stages.benchmark, "benchmark_markdown", lambda result: "| timings |\n")
    run(make_cfg("stage=benchmark", "prune.target_speedup=1.5"))
    bench = json.loads((tmp_path / "run" / "benchmark.json").read_text())
    assert bench["target_speedup"]["target"] == 1.5 and bench["speedup_forward"] >= 1.5
    assert (tmp_path / "run" / "benchmark.md").read_text().startswith("Latency target 1.50x on cpu")


@pytest.mark.parametrize(
    ("trainer", "gpus", "refused"),
    [
        ({"devices": "auto", "accelerator": "auto"}, 4, True),  # Lightning starts one process per GPU
        ({"devices": "auto", "accelerator": "auto"}, 0, False),
        ({"devices": "auto", "accelerator": "cpu"}, 4, False),
        ({"devices": -1, "accelerator": "gpu"}, 2, True),
        ({"devices": [0, 1], "accelerator": "gpu"}, 4, True),
        ({"devices": 1, "accelerator": "gpu", "num_nodes": 2}, 1, True),
        ({"devices": 1, "accelerator": "gpu"}, 4, False),
    ],
)
def test_measured_choices_are_refused_where_lightning_starts_several_processes(trainer, gpus, refused):
    from omegaconf import OmegaConf

    from spade_pl.job.preflight import check_processes
    from spade_pl.pruning.settings import PruneSettings

    settings = PruneSettings(target_speedup=2.0)
    if refused:
        with pytest.raises(
            SpadeInputError, match=r"prune.target_speedup needs one process \(trainer.devices=.*processes"
        ):
            check_processes(OmegaConf.create(trainer), settings, gpu_count=gpus)
    else:
        check_processes(OmegaConf.create(trainer), settings, gpu_count=gpus)
