"""Several processes per job (DDP) and several jobs per machine (parallel sweeps), made safe.

- Ranks: Lightning's DDP re-runs the whole command once per extra rank, so everything before ``fit`` runs on
  every rank; :func:`rank` tells them apart, :func:`is_writer` names the one that writes reports.
- Relaunch: Lightning re-runs a Hydra app with ``sys.argv`` plus the *run* folder, which inside a multirun
  would start the whole sweep again per rank. :func:`install_job_relaunch` makes it re-run *this job*: its
  own overrides, pinned to its output folder (single runs and sweep jobs alike).
- Gathering: :func:`gather_unique` merges per-rank results by key (per-volume scores), keeping one value per key
  where a sampler's padding made two ranks score the same volume, so DDP scores every volume exactly once.
- Job scope: :func:`job_scope` undoes what a job's DDP left in the launching process (the process group, the
  rank variables Lightning exported), so the next job of a sweep run in the same process starts its own ranks,
  and says in one line why a rank stopped when its wait on the other ranks failed (:func:`collective_failure`).
- GPU placement: :func:`claim_gpus` gives each job of a parallel sweep on one machine its own GPU(s), by
  holding a per-GPU lock file for the job's lifetime (no two jobs on one device by accident).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import torch
from lightning.pytorch.utilities import rank_zero_only

from spade_pl.core.errors import RunFailure

log = logging.getLogger(__name__)
GPU_ENV = "SPADE_PL_GPUS"  # the GPUs the launching rank claimed, inherited by the ranks it starts
_held_locks: list[IO[str]] = []  # open lock files of the claimed GPUs (released when the process ends)


def rank() -> int:
    """Global rank of this process (0 outside DDP): Lightning reads it from RANK/LOCAL_RANK/SLURM_PROCID."""
    return int(getattr(rank_zero_only, "rank", 0) or 0)


def is_writer() -> bool:
    """Only rank 0 writes results, benchmarks, caches and dashboards."""
    return rank() == 0


def world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_unique(items: dict[Hashable, Any], better: Callable[[Any, Any], bool] | None = None) -> dict[Hashable, Any]:
    """Union of every rank's ``items``; of two values for one key the first rank's wins, or, with ``better``, the
    one ``better(new, kept)`` prefers. ``items`` itself outside DDP."""
    if world_size() == 1:
        return dict(items)
    gathered: list[dict[Hashable, Any] | None] = [None] * world_size()
    torch.distributed.all_gather_object(gathered, items)
    merged: dict[Hashable, Any] = {}
    for part in gathered:
        for key, value in (part or {}).items():
            if key not in merged or (better is not None and better(value, merged[key])):
                merged[key] = value
    return merged


def from_rank_zero(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself outside DDP): a choice measured on data, which each
    rank would make on its own batch, made once."""
    if world_size() == 1:
        return value
    shared = [value]
    torch.distributed.broadcast_object_list(shared, src=0)
    return shared[0]


def collective_failure(err: BaseException) -> RunFailure | None:
    """``err`` in one line when it is a wait on the other ranks that failed, else None.

    A collective (broadcast, gather, barrier) fails on a rank when another rank has died (gloo: the connection is
    closed) or has not joined within the process group's timeout (``trainer.strategy.timeout``). The raw error
    names neither the rank nor what it waited for, and under Hydra it prints a screen of traceback.
    """
    frames = traceback.extract_tb(err.__traceback__)
    collective = next((f.name for f in reversed(frames) if Path(f.filename).name == "distributed_c10d.py"), None)
    if collective is None:
        return None
    ours = next((f for f in reversed(frames) if f"{os.sep}spade_pl{os.sep}" in f.filename), None)
    where = f"{collective}, called from {Path(ours.filename).stem}.{ours.name}" if ours else collective
    text = str(err).lower()
    if "timed out" in text or "timeout" in text:
        return RunFailure(
            f"rank {rank()} waited longer than trainer.strategy.timeout for the other ranks ({where}): another "
            f"rank is stuck or has stopped (see its log)"
        )
    return RunFailure(
        f"rank {rank()} lost the other ranks while waiting for them ({where}): another rank has failed or was "
        f"killed (see its log)"
    )


def job_relaunch_command(local_rank: int) -> tuple[list[str], str]:
    """The command a DDP rank runs: this job's overrides, pinned to this job's output folder."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    command = [
        sys.executable,
        "-m",
        "spade_pl",
        *hydra_cfg.overrides.task,
        f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',
        f"hydra.job.name=ddp_rank_{local_rank}",
        "hydra.output_subdir=null",  # the launching rank already saved the config
    ]
    return command, os.getcwd()


def install_job_relaunch() -> None:
    """Point Lightning's DDP subprocess launcher at :func:`job_relaunch_command` (it owns no public hook)."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = job_relaunch_command


def _physical_ids(count: int) -> list[str]:
    """Names of the visible GPUs that stay the same across jobs (CUDA_VISIBLE_DEVICES entries, else indices)."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[:count] if len(visible) >= count else [str(i) for i in range(count)]


def _try_lock(path: Path) -> IO[str] | None:
    handle = open(path, "a")  # noqa: SIM115 - held open for the job's lifetime on success
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def claim_gpus(
    wanted: int,
    available: int,
    lock_dir: Path | None = None,
    poll_s: float = 5.0,
) -> list[int]:
    """Lock ``wanted`` of the ``available`` GPUs that no other spade-pl job holds; wait while all are taken.

    Lock files live in the machine's temp folder (one per physical GPU), so jobs launched by joblib, submitit
    or by hand on one machine see each other; a finished or killed job releases its GPUs automatically.
    """
    lock_dir = lock_dir or Path(tempfile.gettempdir()) / "spade_pl-gpu-locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    ids = _physical_ids(available)
    for attempt in range(sys.maxsize):
        taken: list[tuple[int, IO[str]]] = []
        for index, physical in enumerate(ids):
            handle = _try_lock(lock_dir / f"gpu-{physical}.lock")
            if handle is not None:
                taken.append((index, handle))
                if len(taken) == wanted:
                    _held_locks.extend(h for _, h in taken)
                    return [i for i, _ in taken]
        for _, handle in taken:
            handle.close()
        if attempt % 60 == 0:
            log.info("[gpu] all %d GPUs are taken by other spade-pl jobs; waiting for %d to free up", available, wanted)
        time.sleep(poll_s)
    raise AssertionError("unreachable")


def release_gpus() -> None:
    """End of a job: free its GPUs for the next job (sweep jobs may run one after another in one process)."""
    if _held_locks:
        os.environ.pop(GPU_ENV, None)
    while _held_locks:
        _held_locks.pop().close()


def process_count(devices: Any, accelerator: str, num_nodes: int = 1, gpu_count: int | None = None) -> int:
    """How many processes Lightning starts for ``trainer.devices`` on ``trainer.accelerator``: ``auto`` and -1 mean
    every GPU of the node when the job runs on GPUs (one process on a CPU), a list its length, a number itself."""
    gpus = torch.cuda.device_count() if gpu_count is None else gpu_count
    on_gpus = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0)
    if devices in ("auto", -1, None):
        per_node = max(gpus, 1) if on_gpus else 1
    elif isinstance(devices, str):
        per_node = len([d for d in devices.split(",") if d.strip()]) if "," in devices else int(devices)
    elif isinstance(devices, Sequence):
        per_node = len(devices)
    else:
        per_node = int(devices)
    return per_node * int(num_nodes or 1)


def place_on_gpus(devices: Any, accelerator: str, gpu_count: int | None = None) -> list[int] | None:
    """Which GPUs this job's trainer should use, or None to leave ``trainer.devices`` as configured.

    Applies when the job runs on GPUs and asks for a number of them smaller than the machine has: the launching
    rank claims free ones (:func:`claim_gpus`) and hands them to its DDP ranks through ``SPADE_PL_GPUS``.
    ``devices=-1``/``"auto"`` (all GPUs) or an explicit list is used as given.
    """
    if accelerator not in ("gpu", "cuda", "auto"):
        return None
    inherited = os.environ.get(GPU_ENV)
    if inherited:
        return [int(i) for i in inherited.split(",")]
    count = torch.cuda.device_count() if gpu_count is None else gpu_count
    if count == 0 or not isinstance(devices, int) or devices < 1 or devices >= count:
        return None
    gpus = claim_gpus(devices, count)
    os.environ[GPU_ENV] = ",".join(map(str, gpus))
    log.info("[gpu] this job runs on GPU(s) %s of %d (held until it ends)", gpus, count)
    return gpus


@contextlib.contextmanager
def job_scope() -> Iterator[None]:
    """Run one job; afterwards drop its process group, its GPUs and the environment its DDP launch exported.

    Lightning's launcher exports LOCAL_RANK, WORLD_SIZE, MASTER_PORT, ... into this process and keeps the
    process group alive; a second job in the same process (Hydra's basic launcher runs a sweep's jobs one after
    another) would otherwise believe its ranks already exist and wait for ranks that have exited.
    """
    environment = dict(os.environ)
    install_job_relaunch()
    try:
        yield
    except RuntimeError as err:
        failure = collective_failure(err)
        if failure is None:
            raise
        raise failure from err
    finally:
        release_gpus()
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key in set(os.environ) - set(environment):
            del os.environ[key]
        os.environ.update(environment)
