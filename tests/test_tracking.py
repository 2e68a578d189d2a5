"""W&B runs carry the resolved config and the job's summary; the dashboard spec builds offline; the report
panel shows reconstructions; GPU placement and the rank-aware teacher cache keep parallel work apart."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import matplotlib.image
import pytest
from omegaconf import OmegaConf

from spade_pl.core.distributed import GPU_ENV, claim_gpus, place_on_gpus, release_gpus
from spade_pl.core.errors import RunFailure, SpadeInputError
from spade_pl.job.pipeline import run
from spade_pl.reporting.dashboard import build_workspace, spec_json
from spade_pl.reporting.dashboard import main as dashboard_main
from spade_pl.reporting.results import summary_record
from spade_pl.training.teacher_cache import TeacherCache
from wandb_records import flatten, run_contents


def test_offline_wandb_runs_carry_the_resolved_config_and_the_job_summary(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    results = run(
        make_cfg("logger=wandb", "debug=limit", "prune.ratio=0.5", "benchmark.repeats=1", "benchmark.warmup=0")
    )
    runs = {}
    for run_dir in (tmp_path / "run" / "wandb").glob("offline-run-*"):
        contents = settled_contents(run_dir)
        runs[contents["run"][1]] = contents
    assert {"test-dense", "test-pruned_(one-shot)", "finetune-distill", "summary"} <= set(runs)
    assert len({c["run"][0] for c in runs.values()}) == 1  # one group for every stage of the job
    for contents in runs.values():
        config = flatten(contents["config"])  # W&B's runs table shows nested keys this way
        assert config["prune.ratio"] == 0.5 and config["finetune.name"] == "distill" and config["seed"] == 42
        assert config["choice.network"] == "e2e_varnet" and config["network.model.num_cascades"] == 2
        assert config["paths.output_dir"] == str(tmp_path / "run")  # resolved, not `${hydra:...}`
    summary = runs["summary"]["summary"]
    expected = summary_record(results)
    for key in ("dense/psnr", "finetuned/psnr", "finetuned/delta_psnr", "speedup_forward", "mac_bound_forward"):
        assert summary[key] == pytest.approx(expected[key])
    assert summary["strategy"] == "distill" and summary["pruned/params"] < summary["dense/params"]
    assert any(key.startswith("reconstructions") for key in runs["summary"]["history_keys"])


def settled_contents(run_dir: Path, timeout_s: float = 30) -> dict:
    """The run's records once wandb-core has flushed them: its service writes the offline log asynchronously,
    and on a busy machine the last run's first block can land a moment after ``finish()`` returned."""
    deadline = time.monotonic() + timeout_s
    while True:
        contents = run_contents(run_dir) if any(run_dir.glob("*.wandb")) else {}
        if "run" in contents or time.monotonic() > deadline:
            return contents
        time.sleep(0.5)


def test_summary_record_names_models_by_role():
    entry = {"mean": {"psnr": 30.0, "ssim": 0.9}}
    results = {
        "prune": {"ratio": 0.25, "depth": 0.5},
        "models": {
            "zero-filled": entry,
            "dense": {"mean": {"psnr": 30.0, "ssim": 0.9, "solver_iterations": 14.0}},
            "pruned + selfsup": {"mean": {"psnr": 29.0, "ssim": 0.8, "solver_iterations": 9.5}},
        },
        "strategy": "selfsup",
        "finetuned_model": "pruned + selfsup",
    }
    record = summary_record(results)
    assert record["strategy"] == "selfsup" and record["ratio"] == 0.25 and record["depth"] == 0.5
    assert record["dense/solver_iterations"] == 14.0 and record["finetuned/solver_iterations"] == 9.5
    assert record["finetuned/delta_psnr"] == -1.0 and "speedup_forward" not in record
    assert record["baseline/psnr"] == 30.0  # the problem's classical reconstruction, whatever its name
    sr = summary_record({**results, "models": {"bicubic": entry, **results["models"]}})
    assert sr["baseline/psnr"] == 30.0 and "bicubic/psnr" not in sr
    assert flatten({"a": {"b": 1, "c": [1, 2]}}) == {"a.b": 1, "a.c": [1, 2]}
    baseline = {**results, "models": {"zero-filled": entry, "dense": entry, "scratch (pruned widths)": entry}}
    record = summary_record({**baseline, "strategy": "scratch", "finetuned_model": "scratch (pruned widths)"})
    assert record["strategy"] == "scratch" and record["finetuned/psnr"] == 30.0  # named by the run, not parsed
    assert record["finetuned_label"] == "scratch (pruned widths)"


def test_dashboard_spec_builds_offline(tmp_path, capsys):
    spec = spec_json(build_workspace("team", "spade-pl", "grid-2026-11-26_10-00-00"))
    for panel in ("Scatter Plot", "Parallel Coordinates Plot", "Media Browser"):
        assert f'"viewType": "{panel}"' in spec
    assert '"summary:speedup_forward"' in spec and '"config:prune.value.ratio"' in spec
    assert '"value": "grid-2026-11-26_10-00-00"' in spec and '"value": "summary"' in spec
    out = tmp_path / "ws.json"
    assert dashboard_main(["--entity", "team", "--group", "g", "--out", str(out)]) == 0
    assert out.read_text().startswith("{") and "wrote the workspace spec" in capsys.readouterr().out


def test_results_png_shows_one_reconstruction_per_model(make_cfg, tmp_path):
    results = run(make_cfg("debug=limit", "finetune=none", "benchmark.repeats=1", "benchmark.warmup=0"))
    assert list(results["models"]) == ["zero-filled", "dense", "pruned (one-shot)"]
    height, width = matplotlib.image.imread(tmp_path / "run" / "results.png").shape[:2]
    assert height > 700 and width > 800  # two image rows (slices, error maps) above the bars


def test_parallel_jobs_get_different_gpus_and_release_them(tmp_path):
    first = claim_gpus(1, 2, tmp_path)
    second = claim_gpus(1, 2, tmp_path)  # another open file description: as good as another process
    assert sorted(first + second) == [0, 1]
    got: list[list[int]] = []
    waiter = threading.Thread(target=lambda: got.append(claim_gpus(1, 2, tmp_path, poll_s=0.05)))
    waiter.start()
    time.sleep(0.3)
    assert not got  # both GPUs are held: the third job waits
    release_gpus()
    waiter.join(timeout=5)
    assert got and got[0][0] in (0, 1)
    release_gpus()


def test_gpu_placement_applies_only_when_a_job_wants_fewer_gpus_than_the_machine_has(monkeypatch, tmp_path):
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    monkeypatch.delenv(GPU_ENV, raising=False)
    assert place_on_gpus(1, "cpu", gpu_count=4) is None
    assert place_on_gpus(-1, "gpu", gpu_count=4) is None and place_on_gpus(4, "gpu", gpu_count=4) is None
    assert place_on_gpus(2, "gpu", gpu_count=4) == [0, 1]
    assert place_on_gpus(2, "gpu", gpu_count=4) == [0, 1]  # a DDP rank inherits its launcher's GPUs
    release_gpus()
    assert GPU_ENV not in os.environ


def test_teacher_cache_is_rank_aware(tmp_path):
    cfg = OmegaConf.create(
        {"network": {}, "data": {}, "problem": {}, "pretrain": {}, "trainer": {}, "seed": 0, "allow_tf32": False}
    )
    cache = TeacherCache(tmp_path, cfg)
    trained = tmp_path / "trained.ckpt"
    trained.write_bytes(b"weights")
    calls: list[str] = []

    def train(name: str):
        def _train() -> Path:
            calls.append(name)
            if name == "rank0":  # rank 1 of the same run starts while rank 0 trains (the marker exists)
                follower = threading.Thread(target=lambda: cache.get_or_train(train("rank1"), True, "run", rank=1))
                follower.start()
                follower.join(timeout=5)
            return trained

        return _train

    with pytest.raises(SpadeInputError, match="pretrain.train_if_missing=false"):
        cache.get_or_train(train("never"), allowed=False, run_id="run")
    assert cache.get_or_train(train("rank0"), allowed=True, run_id="run") == cache.path
    assert calls == ["rank0", "rank1"] and cache.path.read_bytes() == b"weights"
    assert not list(cache.folder.glob(".training-*"))
    assert cache.get_or_train(train("again"), True, "other", rank=1) == cache.path  # cached: every rank reuses
    assert calls == ["rank0", "rank1"]


def _teacher_cache(tmp_path) -> TeacherCache:
    cfg = OmegaConf.create(
        {"network": {}, "data": {}, "problem": {}, "pretrain": {}, "trainer": {}, "seed": 0, "allow_tf32": False}
    )
    return TeacherCache(tmp_path, cfg)


def test_a_rank_whose_rank_zero_failed_before_the_teacher_stops_in_bounded_time(tmp_path):
    """Rank 0 died before it found or trained the teacher (no marker, no cached file, no sign of life): the other
    rank says so in one line after the silence bound instead of waiting until the cluster kills the job."""
    cache = _teacher_cache(tmp_path)
    started = time.monotonic()
    with pytest.raises(RunFailure, match=r"^rank 1 waited for rank 0 to find or train the dense teacher in .*"):
        cache.get_or_train(lambda: pytest.fail("trained"), True, "run", rank=1, poll_s=0.05, silence_s=0.5)
    assert 0.5 <= time.monotonic() - started < 3


def test_a_rank_keeps_waiting_while_rank_zero_waits_for_another_jobs_teacher(tmp_path):
    """Rank 0 waits on the cache lock (another job trains the shared teacher) and shows it lives; rank 1 waits
    past the silence bound, then reuses the teacher once it is cached."""
    cache = _teacher_cache(tmp_path)
    cache.folder.mkdir(parents=True)
    trained = tmp_path / "trained.ckpt"
    trained.write_bytes(b"weights")
    other_job = open(cache.folder / ".lock", "w")  # noqa: SIM115 - held across threads on purpose
    fcntl.flock(other_job, fcntl.LOCK_EX)
    results: dict[str, Path] = {}
    rank0 = threading.Thread(
        target=lambda: results.setdefault("0", cache.get_or_train(lambda: trained, True, "run", poll_s=0.05))
    )
    rank1 = threading.Thread(
        target=lambda: results.setdefault(
            "1", cache.get_or_train(lambda: trained, True, "run", rank=1, poll_s=0.05, silence_s=0.5)
        )
    )
    rank0.start()
    rank1.start()
    time.sleep(1.5)  # three times the silence bound: rank 1 still waits, rank 0 still beats
    assert rank1.is_alive()
    cache.path.write_bytes(b"weights")  # the other job cached the teacher
    fcntl.flock(other_job, fcntl.LOCK_UN)
    other_job.close()
    rank0.join(timeout=10)
    rank1.join(timeout=10)
    assert results == {"0": cache.path, "1": cache.path}


def test_pareto_points_sit_at_the_median_speedup_of_their_ratio_with_the_spread_over_seeds():
    from spade_pl.reporting.collect import pareto_curves

    def row(strategy, ratio, seed, speedup, psnr, one_shot=20.0, **extra):
        return {"strategy": strategy, "ratio": ratio, "seed": seed, "speedup_forward": speedup,
                "finetuned/psnr": psnr, "one_shot/psnr": one_shot + seed, **extra}  # fmt: skip

    rows = [
        row("distill", 0.5, 1, 1.2, 30.0),
        row("distill", 0.5, 2, 3.0, 32.0),  # a noisy timing: the point stays at the ratio's median
        row("scratch", 0.5, 1, 1.4, 29.0),
        row("scratch", 0.5, 2, 1.3, 29.0),
        row("distill", 0.5, 1, 1.1, 10.0, scored_on="mask_type=equispaced"),  # a transfer job: left out
    ]
    curves = pareto_curves(rows, "psnr")
    assert curves["distill"] == [(1.35, 31.0, pytest.approx(2**0.5), 0.5)]
    assert curves["scratch"] == [(1.35, 29.0, 0.0, 0.5)]
    assert curves["one_shot"] == [(1.35, 21.5, pytest.approx(0.5**0.5), 0.5)]  # one model per seed, not per job
