"""Sweeps (-m with the basic, joblib, submitit and Optuna sweepers/launchers) and DDP, run as users run them:
the real CLI in a subprocess, on tiny sizes, each on a cold teacher cache."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from conftest import spade_cli, tiny_overrides
from spade_pl.__main__ import config_dir

FAST = ["+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2", "benchmark.repeats=1", "benchmark.warmup=0"]
EPOCHS = ["pretrain.max_epochs=1", "finetune.max_epochs=1"]
# two jobs at once on a small machine: one benchmark thread each, no per-volume line or layout timing (what these
# tests check is the launcher, not the timings; two jobs with two threads each on two cores spin-wait)
CONCURRENT = ["benchmark.threads=1", "benchmark.volume=false", "benchmark.memory_format=contiguous"]


def sweep_dir(root: Path, task: str = "spade") -> Path:
    (found,) = (root / "logs" / task / "multiruns").iterdir()
    return found


def jobs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())


def teachers(cache: Path) -> list[Path]:
    return sorted((cache / "teachers").glob("*/dense.ckpt"))


def tiny_sweep(root: Path, *overrides: str) -> Path:
    """``python -m spade_pl -m OVERRIDES`` on tiny sizes and a cold cache (``root/cache``); the sweep folder."""
    proc = spade_cli("-m", *overrides, *tiny_overrides(), *FAST, *EPOCHS, cwd=root, cache=root / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep_dir(root)


@pytest.mark.slow
def test_parallel_joblib_sweep_trains_one_teacher_and_collects_the_grid(tmp_path):
    cache = tmp_path / "cache"
    sweep = tiny_sweep(
        tmp_path,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "prune.ratio=0.5",
        "finetune=distill,supervised",
        *CONCURRENT,
    )
    done = jobs(sweep)
    assert len(done) == 2 and all((j / "results.json").is_file() for j in done)
    assert len(teachers(cache)) == 1
    trained_here = [j for j in done if (j / "checkpoints" / "pretrain").is_dir()]
    assert len(trained_here) == 1  # the other, started at the same time, waited for it and reused it
    dense = {json.dumps(json.loads((j / "results.json").read_text())["models"]["dense"]) for j in done}
    assert len(dense) == 1  # every job compared against the same teacher
    table = (sweep / "sweep.md").read_text().splitlines()
    assert table[0].startswith("| ratio | strategy | dense PSNR | one-shot PSNR | fine-tuned PSNR |")
    assert len([line for line in table if line.startswith("| 0.5 |")]) == 2
    assert (sweep / "sweep.csv").read_text().count("\n") == 3
    assert (sweep / "pareto.png").stat().st_size > 10_000


def test_grid_experiment_is_one_sweep_of_ratios_times_strategies(make_cfg):
    cfg = make_cfg("experiment=grid", tiny=False)
    params = dict(cfg.hydra.sweeper.params)
    assert params == {"prune.ratio": "0.25,0.5,0.75", "finetune": "supervised,distill,selfsup"}
    assert cfg.task_name == "grid"


def test_reviewer_experiment_sweeps_ratios_times_every_strategy_and_both_scratch_budgets(make_cfg):
    params = dict(make_cfg("experiment=reviewer", tiny=False).hydra.sweeper.params)
    strategies = params["finetune"].split(",")
    assert params["prune.ratio"] == "0.25,0.5,0.75"
    assert strategies == [
        *("none", "supervised", "distill", "selfsup"),
        *("scratch", "scratch_distill", "scratch_total", "scratch_distill_total"),
    ]
    for name in strategies:  # each its own name (its curve, its stage folder), the two budgets apart
        cfg = make_cfg(f"finetune={name}", tiny=False)
        assert cfg.finetune.name == name
    assert make_cfg("finetune=scratch_total", tiny=False).finetune.budget == "total"


@pytest.mark.parametrize("network", sorted(p.stem for p in (Path(config_dir()) / "network").glob("*.yaml")))
def test_every_strategy_of_the_reviewer_grid_gets_the_same_epochs(make_cfg, network):
    """Equal budgets by construction: each strategy and baseline trains the network's fine-tuning epochs, the
    ``_total`` baselines those plus the teacher's, whatever recipes the network has."""
    from hydra.core.global_hydra import GlobalHydra

    from spade_pl.job.recipe import FinetuneRecipe

    strategies = make_cfg("experiment=reviewer", tiny=False).hydra.sweeper.params["finetune"].split(",")
    epochs = {}
    for name in strategies:
        GlobalHydra.instance().clear()
        cfg = make_cfg("experiment=reviewer", f"network={network}", f"finetune={name}", tiny=False)
        recipe = FinetuneRecipe.from_config(cfg.finetune)
        if recipe.trains:
            epochs[name] = recipe.epochs(cfg.finetune.max_epochs, cfg.pretrain.max_epochs)
    budget = cfg.network.finetune_epochs
    assert {n: e for n, e in epochs.items() if not n.endswith("_total")} == dict.fromkeys(
        [n for n in epochs if not n.endswith("_total")], budget
    )
    assert {epochs["scratch_total"], epochs["scratch_distill_total"]} == {budget + cfg.pretrain.max_epochs}


@pytest.mark.slow
def test_masks_are_a_sweep_axis_with_a_teacher_each_and_a_bad_job_fails_alone(tmp_path):
    """-m over the training mask's acceleration: each mask trains its own teacher; the jobs are also scored on an
    equispaced mask (data.eval_mask), which the table's rows say. A job with a bad value fails alone, in one line,
    and the sweep goes on, then reports it."""
    cache = tmp_path / "cache"
    sweep_args = ("problem.mask.accelerations=[4],[8]", "prune.ratio=1.5,0.5", "finetune=none")
    proc = spade_cli(
        "-m",
        *sweep_args,
        "data.eval_mask.mask_type=equispaced",
        *tiny_overrides(),
        *FAST,
        *EPOCHS,
        cwd=tmp_path,
        cache=cache,
    )
    assert proc.returncode != 0  # Hydra reports the failed jobs once the sweep is over
    assert "prune.ratio=1.5 is invalid; allowed: 0 <= ratio < 1" in proc.stderr
    sweep = sweep_dir(tmp_path)
    bad = [j for j in jobs(sweep) if not (j / "results.json").exists()]
    done = [j for j in jobs(sweep) if (j / "results.json").is_file()]
    assert len(bad) == 2 and len(done) == 2
    assert all("prune.ratio=1.5 is invalid" in (j / "__main__.log").read_text() for j in bad)
    assert len(teachers(cache)) == 2
    trained = sorted(
        json.loads((j / "results.json").read_text())["transfer"]["trained_mask"]["accelerations"][0] for j in done
    )
    assert trained == [4, 8]
    table = (sweep / "sweep.md").read_text()
    assert "| scored on (transfer) |" in table.splitlines()[0]
    for acceleration in (4, 8):
        assert f"mask_type=equispaced accelerations=[{acceleration}] center_fractions=[0.08]" in table
    assert "2 job(s) left no results.json (failed or unfinished): " in table and all(str(j) in table for j in bad)


@pytest.mark.slow
def test_submitit_local_sweep(tmp_path):
    sweep = tiny_sweep(
        tmp_path,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "prune.ratio=0.25,0.5",
        "finetune=distill",
        *CONCURRENT,
    )
    assert sum((j / "results.json").is_file() for j in jobs(sweep)) == 2
    assert len(teachers(tmp_path / "cache")) == 1
    assert (sweep / "pareto.png").is_file()


@pytest.mark.slow
def test_optuna_search_optimises_the_ground_truth_free_validation_loss(tmp_path):
    proc = spade_cli(
        "hparams_search=finetune_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "finetune.max_epochs=1",
        *tiny_overrides(),
        *FAST,
        "pretrain.max_epochs=1",
        cwd=tmp_path,
        cache=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["name"] == "optuna" and "finetune.optimizer.lr" in best["best_params"]
    losses = [json.loads((j / "results.json").read_text())["validation"]["val/loss"] for j in jobs(sweep)]
    assert best["best_value"] == pytest.approx(min(losses))


def _ddp_data() -> list[str]:
    """The tiny data with an odd number of test slices (3), so DistributedSampler must pad a rank."""
    keep = [o for o in tiny_overrides() if not o.startswith(("+data.builder.slab_slices", "+data.builder.last_slice"))]
    return [*keep, "+data.builder.slab_slices=3", "+data.builder.last_slice=90"]


def _results(root: Path, kind: str = "runs") -> dict:
    (run_dir,) = [p for p in (root / "logs" / "spade" / kind).iterdir() if (p / "results.json").is_file()]
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_runs_the_whole_job_and_tests_like_one_device(tmp_path):
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
    cache = tmp_path / "cache"
    # a measured depth choice (each rank prunes on its own batch) is made once: DDP refuses ranks whose
    # networks differ
    depth = ("prune.depth=0.5", "prune.depth_importance=measured")
    job = spade_cli(*ddp, *_ddp_data(), *FAST, *EPOCHS, *depth, "finetune=distill", cwd=tmp_path / "job", cache=cache)
    assert job.returncode == 0, job.stderr[-3000:]
    whole = _results(tmp_path / "job")
    assert whole["num_volumes"] == 1 and list(whole["models"])[-1] == "pruned + distill"
    assert len(whole["depth"]["kept"]) == 1
    (dense,) = teachers(cache)  # trained under DDP on the cold cache, then cached by rank 0
    run_dirs = list((tmp_path / "job" / "logs" / "spade" / "runs").iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "ddp_rank_1.log").is_file()  # one folder for both ranks

    per_device = {}
    for name, extra in (("one", ["trainer.accelerator=cpu"]), ("two", ddp)):
        proc = spade_cli("stage=test", f"ckpt_path={dense}", *_ddp_data(), *extra, cwd=tmp_path / name, cache=cache)
        assert proc.returncode == 0, proc.stderr[-3000:]
        per_device[name] = _results(tmp_path / name)["models"]
    one, two = per_device["one"], per_device["two"]
    assert one["model"]["per_volume"][0]["volume"] == two["model"]["per_volume"][0]["volume"]
    for model in ("zero-filled", "model"):
        for metric in ("psnr", "ssim"):
            assert two[model]["mean"][metric] == pytest.approx(one[model]["mean"][metric], abs=1e-6)
    assert two["model"]["mean"] == pytest.approx(whole["models"]["dense"]["mean"], abs=1e-6)


@pytest.mark.slow
def test_ddp_rank_zero_failing_before_the_teacher_is_written_ends_every_rank_in_one_line(tmp_path):
    """Both ranks train the teacher; rank 0 then cannot write it (a full disk). Rank 0 stops in one line, and rank
    1, already waiting in the next stage, ends in one line too instead of waiting for a rank that is gone."""
    cache = tmp_path / "cache"
    fault = ["+callbacks.fault._target_=faults.RankZeroFullDisk", "+callbacks.fault.name=dense.ckpt"]
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy.timeout.minutes=2"]
    helpers = {"PYTHONPATH": str(Path(__file__).parent / "helpers")}
    started = time.perf_counter()
    job = spade_cli(*ddp, *_ddp_data(), *FAST, *EPOCHS, *fault, cwd=tmp_path / "job", cache=cache, env=helpers)
    assert time.perf_counter() - started < 120  # nobody waited out the timeout
    assert job.returncode == 2  # rank 0's exit: bad state of the machine (full disk)
    errors = [line for line in job.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "Traceback" not in job.stderr, job.stderr[-3000:]
    assert any("dense.ckpt: No space left on device" in line for line in errors)
    assert any(line.startswith("error: the run failed: rank 1 lost the other ranks") for line in errors)
    (folder,) = (cache / "teachers").iterdir()
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".alive")) == [".lock"]  # no teacher


def test_slurm_launcher_config_gives_each_job_its_gpus(make_cfg):
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    cfg = make_cfg("hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4", "hydra.launcher.partition=gpu", tiny=False)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert get_class(launcher["_target_"]).__name__ == "SlurmLauncher"
    assert (launcher["gpus_per_node"], launcher["tasks_per_node"], launcher["partition"]) == (4, 4, "gpu")
