"""Waits of one rank on the others are bounded and end in one line naming the rank and the wait: real gloo
process groups of two CPU processes, one of which never joins the collective."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra.utils import instantiate

from spade_pl.core.distributed import collective_failure


def _rank_waits_on_a_missing_peer(rank: int, folder: Path, peer: str) -> None:
    """Rank 1 broadcasts; rank 0 never joins: it sleeps past the timeout, or exits (it died)."""
    from lightning.pytorch.utilities import rank_zero_only

    rank_zero_only.rank = rank  # as Lightning's strategies set it in each rank
    store = f"file://{folder / 'store'}"
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2, timeout=datetime.timedelta(seconds=2))
    if rank == 0:
        if peer == "stuck":
            time.sleep(4)
        return
    try:
        dist.broadcast(torch.zeros(1), src=0)
    except RuntimeError as err:
        failure = collective_failure(err)
        (folder / "message").write_text(str(failure))


@pytest.mark.parametrize(("peer", "said"), [("stuck", "waited longer than trainer.strategy.timeout"), ("dead", "lost")])
def test_a_failed_wait_on_another_rank_is_one_line_naming_the_rank_and_the_wait(tmp_path, peer, said):
    started = time.perf_counter()
    mp.start_processes(_rank_waits_on_a_missing_peer, args=(tmp_path, peer), nprocs=2, start_method="spawn")
    message = (tmp_path / "message").read_text()
    assert message.startswith(f"rank 1 {said}") and "(broadcast" in message and "\n" not in message
    assert time.perf_counter() - started < 60  # bounded by the timeout, not by the 30-minute default


def test_other_errors_are_not_taken_for_a_failed_wait():
    try:
        raise RuntimeError("timed out reading a file")
    except RuntimeError as err:
        assert collective_failure(err) is None


def test_ddp_trainer_config_bounds_waits_with_its_timeout(make_cfg):
    cfg = make_cfg("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy.timeout.minutes=3")
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.strategy._timeout == datetime.timedelta(minutes=3)
