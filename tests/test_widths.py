"""prune.round_to=auto: kept channels rounded down to the multiple measured fastest, at a bounded MAC cost."""

import json

import pytest

from spade_pl.core.errors import SpadeInputError
from spade_pl.job.pipeline import run
from spade_pl.pruning.settings import PruneSettings
from spade_pl.pruning.widths import MAX_MAC_LOSS, Candidate, choose_round_to, kept_channels


def _candidates(macs: dict[int, int]) -> list[Candidate]:
    return [Candidate(m, {"cascade0": [m]}, n) for m, n in macs.items()]  # distinct widths per multiple


def test_kept_channels_round_down_to_the_multiple():
    assert [kept_channels(18, 0.5, m) for m in (None, 1, 2, 4, 8)] == [9, 9, 8, 8, 8]
    assert kept_channels(36, 0.5, 16) == 16 and kept_channels(6, 0.5, 4) == 0


def test_the_fastest_admissible_multiple_is_chosen_and_every_candidate_reported():
    candidates = _candidates({1: 1000, 2: 950, 4: 900, 8: 700})  # 8 removes 30% of the MACs: over the bound
    timed = []

    def time_all(multiples):
        timed.extend(multiples)
        return {1: 0.100, 2: 0.090, 4: 0.080, 8: 0.010}

    choice = choose_round_to(candidates, time_all)
    assert choice.round_to == 4 and timed == [1, 2, 4]  # the inadmissible one is not even timed
    over = choice.candidates[-1]
    assert over.ms is None and f"over {MAX_MAC_LOSS:.0%}" in over.note
    text = choice.markdown("cpu")
    assert "prune.round_to=4 chosen" in text and "| 4 (**chosen**) | cascade0 4 | 900 | 80.0 |" in text


def test_a_multiple_with_the_widths_of_a_smaller_one_is_not_timed_again():
    candidates = [
        Candidate(1, {"c": [6, 12]}, 100),
        Candidate(2, {"c": [6, 12]}, 100),
        Candidate(4, {"c": [4, 12]}, 90),
    ]
    choice = choose_round_to(candidates, lambda multiples: {m: 0.1 / m for m in multiples})
    assert choice.round_to == 4 and candidates[1].ms is None and candidates[1].note == "same widths as round_to=1"


def test_a_gain_within_the_timing_noise_keeps_the_unrounded_widths():
    choice = choose_round_to(_candidates({1: 1000, 2: 990}), lambda ms: {1: 0.100, 2: 0.098})
    assert choice.round_to == 1 and "less than 5% faster" in choice.candidates[1].note


def test_round_to_auto_and_a_latency_target_together_are_refused():
    with pytest.raises(SpadeInputError, match="prune.round_to=auto and prune.target_speedup .* one of them at a time"):
        PruneSettings(round_to="auto", target_speedup=2.0)


def test_the_benchmark_stage_measures_the_multiples_and_prunes_with_the_chosen_one(make_cfg, monkeypatch, tmp_path):
    import spade_pl.job.stages.benchmark
    import spade_pl.job.stages.structure_search

    def coarser_is_faster(networks, batch, settings):  # deterministic stand-in timings
        return {m: 1.0 / m for m in networks}

    monkeypatch.setattr(spade_pl.job.stages.structure_search, "time_forwards", coarser_is_faster)
    monkeypatch.setattr(spade_pl.job.stages.benchmark, "benchmark_markdown", lambda result: "| timings |\n")
    # chans 18 keeps 9/18/36 channels per level: round_to 2 -> 8/18/36, 4 -> 8/16/36, 8 -> 8/16/32, 16 -> none
    out = run(make_cfg("stage=benchmark", "network.model.chans=18", "prune.round_to=auto", "benchmark.repeats=1"))
    choice = json.loads((tmp_path / "run" / "round_to.json").read_text())
    assert out["round_to"] == choice
    timed = [c for c in choice["candidates"] if c["ms"] is not None]
    assert [c["round_to"] for c in choice["candidates"]] == [1, 2, 4, 8]  # 16 would empty the first level
    assert choice["round_to"] == max(c["round_to"] for c in timed) > 1
    chosen = next(c for c in choice["candidates"] if c["round_to"] == choice["round_to"])
    assert all(w % choice["round_to"] == 0 for w in chosen["widths"]["cascade0"][:-1])  # [-1]: the output layer's 2
    assert "Hardware-aware widths on cpu: prune.round_to=" in (tmp_path / "run" / "benchmark.md").read_text()


def test_round_to_auto_is_refused_under_ddp(make_cfg):
    with pytest.raises(
        SpadeInputError, match=r"prune.round_to=auto needs one process \(trainer.devices=2, 2 processes\)"
    ):
        run(make_cfg("stage=benchmark", "prune.round_to=auto", "trainer.devices=2"))
