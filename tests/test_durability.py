"""Durability: checkpoints and results are written atomically and fsync'd, loads are weights-only, and an output
folder that cannot be written (read-only, full disk) is one line, not a traceback or a half-written run."""

from __future__ import annotations

import errno
import sys

import pytest
import torch

from spade_pl.checkpoints import SafeCheckpointIO
from spade_pl.errors import SpadeInputError
from spade_pl.io_utils import check_writable


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
    from spade_pl.pipeline import Run

    trainer = Run(make_cfg("debug=fdr")).trainer("pretrain")
    assert isinstance(trainer.strategy.checkpoint_io, SafeCheckpointIO)


def test_an_unwritable_output_folder_is_one_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SpadeInputError, match=r"output folder .*a_file/run is not writable"):
        check_writable(blocker / "run")


def test_a_full_disk_is_one_line_and_exit_2(tmp_path, monkeypatch, capfd):
    import spade_pl.pipeline
    from spade_pl.__main__ import cli

    def full(cfg):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "results.json"))

    monkeypatch.setattr(spade_pl.pipeline, "run", full)
    monkeypatch.setattr(sys, "argv", ["spade_pl", "stage=benchmark", f"hydra.run.dir={tmp_path / 'run'}"])
    with pytest.raises(SystemExit) as stopped:
        cli()
    err = capfd.readouterr().err
    assert stopped.value.code == 2
    assert "error: cannot access" in err and "No space left on device (full disk, read-only folder" in err
    assert "Traceback" not in err
