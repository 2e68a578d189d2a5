"""Durability: checkpoints and results are written atomically and fsync'd, loads are weights-only, and an output
folder that cannot be written (read-only, full disk) is one line, not a traceback or a half-written run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

import spade_pl.core.atomic_io
from conftest import tiny_overrides
from spade_pl.core.atomic_io import check_writable
from spade_pl.core.errors import SpadeInputError
from spade_pl.weights.checkpoint_files import SafeCheckpointIO

HELPERS = str(Path(__file__).parent / "helpers")


def test_a_failed_checkpoint_save_leaves_the_previous_one_whole(tmp_path):
    io = SafeCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, path)
    with pytest.raises(Exception):  # noqa: B017 - torch.save cannot pickle a lambda
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "bad": lambda: None}, path)
    assert io.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind


class Payload:
    """An arbitrary object: unpickling it would run code from the file (what weights_only forbids)."""


def test_loading_is_weights_only(tmp_path):
    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "object": Payload()}, path)
    with pytest.raises(SpadeInputError, match="cannot be read safely"):
        SafeCheckpointIO().load_checkpoint(path)


def test_every_trainer_saves_and_resumes_through_the_safe_io(make_cfg):
    from spade_pl.job.pipeline import prepare

    trainer = prepare(make_cfg("debug=fdr")).training.trainer("pretrain")
    assert isinstance(trainer.strategy.checkpoint_io, SafeCheckpointIO)


def test_an_unwritable_output_folder_is_one_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SpadeInputError, match=r"output folder .*a_file/run is not writable"):
        check_writable(blocker / "run")


def cli_run(args: list[str], monkeypatch, capfd) -> tuple[int, str]:
    """``python -m spade_pl ARGS`` in-process on the tiny data (helpers importable), its exit code and stderr."""
    from spade_pl.__main__ import cli

    monkeypatch.syspath_prepend(HELPERS)
    monkeypatch.setattr(sys, "argv", ["spade_pl", *tiny_overrides(tuple(args)), *args])
    GlobalHydra.instance().clear()
    try:
        with pytest.raises(SystemExit) as stopped:
            cli()
    finally:
        spade_pl.core.atomic_io.os = os  # the fault callbacks replace it
        GlobalHydra.instance().clear()
    return stopped.value.code, capfd.readouterr().err


def one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    return errors[0]


FULL_DISK = {
    "checkpoint": (
        "stage=pretrain",
        "pretrain.max_epochs=2",
        "+callbacks.fault.name=last.ckpt",
        "+callbacks.fault.epoch=1",
    ),
    "results": ("prune.ratio=0", "finetune=none", "pretrain.max_epochs=1", "+callbacks.fault.name=results.json"),
}


@pytest.mark.parametrize("where", sorted(FULL_DISK))
def test_a_disk_that_fills_up_mid_write_is_one_line_and_exit_2(where, tmp_path, cache_dir, monkeypatch, capfd):
    """ENOSPC from inside a real checkpoint save (epoch 2 of training) or the report's results.json write: the
    previous checkpoint stays whole, no temp file is left, nothing looks finished."""
    monkeypatch.setenv("SPADE_PL_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    fault = ("+callbacks.fault._target_=faults.FullDisk", *FULL_DISK[where])
    code, err = cli_run([*fault, f"hydra.run.dir={run_dir}", "+trainer.limit_train_batches=2"], monkeypatch, capfd)
    assert code == 2, err[-3000:]
    assert "No space left on device (full disk, read-only folder" in one_error_line(err)
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / "results.json").exists()
    if where == "checkpoint":
        last = run_dir / "checkpoints" / "pretrain" / "last.ckpt"
        assert SafeCheckpointIO().load_checkpoint(last)["epoch"] == 0  # epoch 1's save failed, epoch 0's is whole


def test_a_deq_whose_solver_really_diverges_stops_in_one_line_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("SPADE_PL_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    args = [
        "network=deq",
        "stage=pretrain",
        "pretrain.max_epochs=3",
        "+trainer.limit_train_batches=2",
        "+callbacks.fault._target_=faults.ExpansiveStep",
        "+callbacks.fault.epoch=1",
        f"hydra.run.dir={run_dir}",
    ]
    code, err = cli_run(args, monkeypatch, capfd)
    assert code == 1, err[-3000:]  # a run failure, not bad input: its traceback is in the job's log file
    line = one_error_line(err)
    assert line.startswith("error: the run failed: DEQ solver produced a non-finite iterate at iteration")
    log_file = Path(line.rsplit("(traceback in ", 1)[1].rstrip(")"))
    assert log_file.parent == run_dir and "Traceback" in log_file.read_text() and "anderson" in log_file.read_text()
    last = SafeCheckpointIO().load_checkpoint(run_dir / "checkpoints" / "pretrain" / "last.ckpt")
    assert last["epoch"] == 0 and all(torch.isfinite(v).all() for v in last["state_dict"].values())
    assert float(last["state_dict"]["network.gamma"]) < 10  # the good one, from before the step blew up
