"""Resume: a job killed (SIGKILL) mid-pre-training or mid-fine-tuning and resumed from its run folder ends
with exactly the metrics of the uninterrupted job; a checkpoint only resumes the stage that wrote it."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from conftest import spade_cli, tiny_overrides
from spade_pl.core.errors import SpadeInputError
from spade_pl.job.pipeline import run
from spade_pl.weights.checkpoint_files import SafeCheckpointIO

HELPERS = str(Path(__file__).parent / "helpers")
JOB = [
    *tiny_overrides(),
    "prune.ratio=0.5",
    "finetune=distill",
    "pretrain.max_epochs=2",
    "finetune.max_epochs=2",
    "benchmark.repeats=1",
    "benchmark.warmup=0",
    "seed=4242",
]


def job(tmp_path: Path, name: str, *extra: str, cache: Path) -> tuple[int, Path]:
    run_dir = tmp_path / name
    proc = spade_cli(*JOB, *extra, f"hydra.run.dir={run_dir}", cwd=tmp_path, cache=cache, env={"PYTHONPATH": HELPERS})
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr[-3000:]
    return proc.returncode, run_dir


def kill_at(stage: str, epoch: int) -> list[str]:
    return [
        "+callbacks.kill._target_=kill_at.KillAt",
        f"+callbacks.kill.stage={stage}",
        f"+callbacks.kill.epoch={epoch}",
    ]


def metrics(run_dir: Path) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    return {name: model["mean"] for name, model in results["models"].items()}


@pytest.fixture(scope="module")
def teacher_cache(tmp_path_factory) -> Path:
    """One cache for this module's jobs: their jobs share a teacher config, so it is trained once."""
    return tmp_path_factory.mktemp("teacher_cache")


@pytest.mark.slow
def test_killed_jobs_resume_to_exactly_the_uninterrupted_metrics(tmp_path, teacher_cache):
    rc, straight = job(tmp_path, "straight", cache=teacher_cache)
    assert rc == 0
    expected = metrics(straight)
    assert set(expected) == {"zero-filled", "dense", "pruned (one-shot)", "pruned + distill"}

    for point, (stage, epoch) in {"pretrain": ("pretrain", 1), "finetune": ("finetune-distill", 1)}.items():
        rc, killed = job(tmp_path, f"killed_{point}", *kill_at(stage, epoch), cache=tmp_path / "cache_b")
        assert rc == -signal.SIGKILL, f"the job was not killed in {stage}"
        assert not (killed / "results.json").exists()  # nothing that looks finished
        assert (killed / "checkpoints" / stage / "last.ckpt").is_file()
        rc, _ = job(tmp_path, f"resumed_{point}", f"resume_from={killed}", cache=tmp_path / "cache_b")
        assert rc == 0
        assert metrics(killed) == expected, f"killed in {stage} epoch {epoch}"  # exact, not approximately
    # the fine-tuning resume skipped the finished stages: the teacher came from the cache, no pretrain folder,
    # and the dense model's test results from before the kill were reused, not evaluated again
    assert not (tmp_path / "killed_finetune" / "checkpoints" / "pretrain").exists()
    log = (tmp_path / "resumed_finetune" / "__main__.log").read_text()
    assert "dense was evaluated before the interruption: reusing" in log


@pytest.mark.slow
def test_self_supervised_fine_tuning_with_weight_averaging_and_a_cosine_schedule_resumes_exactly(
    tmp_path, teacher_cache
):
    """Self-supervised steps draw EI transforms and measurement splits from per-step seeds; the weight average with
    its update count and the scheduler's state travel in the checkpoint. A kill mid-way through a cosine annealing
    (the DEQ recipes' schedule) resumes with the draws, the learning rate and the average it had, so the metrics
    are the uninterrupted ones."""
    recipe = (
        "finetune=selfsup",
        "finetune.objective.split_weight=1.0",
        "finetune.ema_decay=0.9",
        "finetune.max_epochs=3",
        "+finetune.scheduler={_target_:torch.optim.lr_scheduler.CosineAnnealingLR,_partial_:true,T_max:3}",
    )
    rc, straight = job(tmp_path, "straight", *recipe, cache=teacher_cache)
    assert rc == 0
    rc, killed = job(tmp_path, "killed", *recipe, *kill_at("finetune-selfsup", 1), cache=teacher_cache)
    assert rc == -signal.SIGKILL
    rc, _ = job(tmp_path, "resumed", *recipe, f"resume_from={killed}", cache=teacher_cache)
    assert rc == 0
    assert metrics(killed) == metrics(straight)
    final = SafeCheckpointIO().load_checkpoint(killed / "checkpoints" / "finetune-selfsup" / "final.ckpt")
    assert [s["last_epoch"] for s in final["lr_schedulers"]] == [3]  # the resumed schedule stepped every epoch once


@pytest.fixture(scope="module")
def finetuned_run(tmp_path_factory, cache_dir) -> Path:
    """A tiny fine-tuning run's folder (its teacher in the session cache), shared by this module's tests."""
    from conftest import compose_tiny

    folder = tmp_path_factory.mktemp("finetuned")
    run(compose_tiny(folder, cache_dir, "debug=limit", "finetune=supervised", *BENCH, "prune.ratio=0.5"))
    return folder / "run"


BENCH = ("benchmark.repeats=1", "benchmark.warmup=0")
MISMATCHES = {
    "prune.ratio=0.25": r"prune.ratio \(0.5 in the checkpoint vs 0.25 now\)",
    "prune.importance=l2": r"prune.importance \('l1' in the checkpoint vs 'l2' now\)",
    "prune.include_sensitivity_net=true": r"prune.include_sensitivity_net \(False in the checkpoint vs True",
    "network.model.chans=6": r"network.chans \(4 in the checkpoint vs 6 now\)",
    "finetune=distill": r"written by stage 'finetune-supervised'; this job trains: finetune-distill",
    "stage=pretrain": r"written by stage 'finetune-supervised'; this job trains: pretrain",
}


def test_a_checkpoint_resumes_only_the_stage_and_config_that_wrote_it(make_cfg, finetuned_run):
    last = finetuned_run / "checkpoints" / "finetune-supervised" / "last.ckpt"
    base = ("debug=limit", "finetune=supervised", "prune.ratio=0.5", f"resume_from={last}")
    for override, message in MISMATCHES.items():
        with pytest.raises(SpadeInputError, match=message):
            run(make_cfg(*base, override))


def test_a_run_folder_made_by_another_command_is_refused(make_cfg, finetuned_run, tmp_path):
    with pytest.raises(SpadeInputError, match=r"belongs to another configuration: prune.ratio"):  # finished
        run(make_cfg("debug=limit", "finetune=supervised", "prune.ratio=0.75", f"resume_from={finetuned_run}"))
    interrupted = tmp_path / "interrupted"
    shutil.copytree(finetuned_run, interrupted)
    (interrupted / "checkpoints" / "finetune-supervised" / "selected.json").unlink()  # as if killed
    with pytest.raises(SpadeInputError, match=r"belongs to another configuration: prune.ratio"):
        run(make_cfg("debug=limit", "finetune=supervised", "prune.ratio=0.75", f"resume_from={interrupted}"))


def test_checkpoints_that_no_training_stage_wrote_are_refused(make_cfg, finetuned_run, tmp_path):
    pruned = finetuned_run / "checkpoints" / "prune" / "pruned.ckpt"
    with pytest.raises(SpadeInputError, match="was not written by a spade-pl training stage"):
        run(make_cfg("debug=limit", "finetune=supervised", "prune.ratio=0.5", f"resume_from={pruned}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpadeInputError, match="is not a spade-pl run folder"):
        run(make_cfg("debug=limit", "finetune=supervised", f"resume_from={tmp_path / 'empty'}"))


def log_of(run_dir: Path) -> str:
    return (run_dir / "__main__.log").read_text()


@pytest.mark.slow
def test_a_resumed_job_keeps_the_structure_it_measured(tmp_path, teacher_cache):
    """The measured choice is reused from the run folder, not timed again: timing noise must not change the pruned
    structure of a job half done (``prune.target_speedup``'s search is reused the same way: test_target_speedup)."""
    choice, file, measuring = ["prune.round_to=auto"], "round_to.json", "choosing round_to among"
    rc, killed = job(tmp_path, "killed", *choice, *kill_at("finetune-distill", 1), cache=teacher_cache)
    assert rc == -signal.SIGKILL and measuring in log_of(killed)
    chosen = json.loads((killed / file).read_text())
    rc, resumed = job(tmp_path, "resumed", *choice, f"resume_from={killed}", cache=teacher_cache)
    assert rc == 0 and measuring not in log_of(resumed)
    assert json.loads((killed / "results.json").read_text())[file.removesuffix(".json")] == chosen
