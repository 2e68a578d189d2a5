"""Checks before any work: config values that would otherwise fail late, deep, or silently wrong
(``max_epochs=-1`` means "train forever" to Lightning, ``num_cascades=0`` builds a network without cascades,
``seed=abc`` is a traceback), then the data against the network and the physics against itself. Each bad value
is one line naming the key or file, the value and what is allowed."""

from __future__ import annotations

import math
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor

from spade_pl.benchmark.settings import BenchmarkSettings
from spade_pl.core.distributed import process_count
from spade_pl.core.errors import require, require_int
from spade_pl.data.splits import SplitDataModule
from spade_pl.job.recipe import FinetuneRecipe
from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.base import MissingOperatorData, Physics
from spade_pl.pruning.settings import PruneSettings
from spade_pl.reporting.metrics import min_scored_size
from spade_pl.weights.formats import chosen_formats
from spade_pl.weights.runtimes import check_runtimes

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def require_positive(key: str, value: Any) -> None:
    require(_is_number(value) and value > 0, f"{key}={value!r} is invalid; allowed: finite numbers > 0")


def check_network(model: dict[str, Any], prefix: str = "network.model") -> None:
    """Every size of the network (an integer: cascades, channels, pools, blocks, iterations, ...) >= 1;
    every real parameter (step sizes, tolerances, regularisation) finite and >= 0."""
    for key, value in model.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            check_network(value, name)
        elif isinstance(value, list) and all(_is_int(v) for v in value):
            require(len(value) > 0 and all(v >= 1 for v in value), f"{name}={value} is invalid; allowed: integers >= 1")
        elif _is_int(value):
            require_int(name, value, 1)
        elif isinstance(value, float):
            require(math.isfinite(value) and value >= 0, f"{name}={value!r} is invalid; allowed: finite numbers >= 0")


def network_choice(cfg: DictConfig) -> str:
    """``network=<option>`` as the user typed it (for messages), else the network class name."""
    try:
        return f"network={HydraConfig.get().runtime.choices['network']}"
    except (ValueError, KeyError):
        return cfg.network.model._target_.rsplit(".", 1)[-1]


def check_network_fits(cfg: DictConfig) -> None:
    """The network needs nothing the data's physics does not provide (checked first: a network made for
    another problem may not even resolve its config against this problem's data)."""
    network, physics = get_class(cfg.network.model._target_), get_class(cfg.data._target_).physics_type
    missing = network.missing_from(physics)
    require(
        not missing,
        f"{network_choice(cfg)} does not fit problem={cfg.problem.name}: it needs {' and '.join(missing)}, which "
        f"its physics ({physics.__name__}) does not provide",
    )


def check_config(cfg: DictConfig) -> None:
    """Every config value a job reads, before the data is built (one line for the first bad one)."""
    check_network_fits(cfg)
    require_int("seed", cfg.seed, 0)
    recipe = FinetuneRecipe.from_config(cfg.finetune)
    sections = {"pretrain": cfg.get("pretrain") or {}, "finetune": cfg.finetune}
    if cfg.finetune.get("test_time"):
        sections["finetune.test_time"] = cfg.finetune.test_time
    for section, node in sections.items():
        if "max_epochs" in node:
            require_int(f"{section}.max_epochs", node.max_epochs, 0)
        decay = node.get("ema_decay")
        require(
            decay is None or (_is_number(decay) and 0 < decay < 1),
            f"{section}.ema_decay={decay!r} is invalid; allowed: null (off) or a number in (0, 1)",
        )
        optimizer = node.get("optimizer") or {}
        if "lr" in optimizer:
            require_positive(f"{section}.optimizer.lr", optimizer.lr)
        if optimizer.get("weight_decay") is not None:
            decay = optimizer.weight_decay
            require(
                _is_number(decay) and decay >= 0,
                f"{section}.optimizer.weight_decay={decay!r} is invalid; allowed: finite numbers >= 0",
            )
    recipe.check_objectives(cfg.finetune)
    check_network(OmegaConf.to_container(cfg.network.model, resolve=True))
    check_runtimes(BenchmarkSettings(**cfg.benchmark))  # the settings validate themselves, then the runtime table
    chosen_formats(list(cfg.export.formats))
    check_trainer(cfg.trainer)
    check_processes(cfg.trainer, PruneSettings.from_config(cfg.prune))


def check_processes(trainer: DictConfig, prune: PruneSettings, gpu_count: int | None = None) -> None:
    """Structure choices made by timing need one process: every rank would time, and may choose, its own. The
    count is the one Lightning will start (``devices=auto`` on a node with 4 GPUs is 4)."""
    count = process_count(
        trainer.get("devices", "auto"), trainer.get("accelerator", "auto"), trainer.get("num_nodes", 1), gpu_count
    )
    if count == 1:
        return
    devices = f"{trainer.get('devices', 'auto')}, {count} processes"
    require(
        prune.target_speedup is None,
        f"prune.target_speedup needs one process (trainer.devices={devices}): choose the ratio with "
        f"stage=benchmark prune.target_speedup=..., then pass prune.ratio=...",
    )
    require(
        prune.round_to != "auto",
        f"prune.round_to=auto needs one process (trainer.devices={devices}): choose the multiple "
        f"with stage=benchmark prune.round_to=auto, then pass prune.round_to=...",
    )


def check_data(cfg: DictConfig, datamodule: SplitDataModule, network: MBDLNetwork) -> None:
    """The data fits the job: its images are at least as large as the network takes and the metrics score (one
    line before any training, which would otherwise train into NaN or fail in the first validation), and its
    physics passes :func:`check_adjoint` on the first evaluated sample."""
    batch = datamodule.first_eval_batch()
    problem = cfg.problem
    checks = (
        (batch.physics().image_size(batch.y), network.min_image_size(), network_choice(cfg)),
        (
            tuple(batch.target.shape[-2:]),
            min_scored_size(problem.metric_convention, problem.get("metric_border", 0)),
            "scoring",
        ),
    )
    for (height, width), (smallest, why), who in checks:
        require(
            min(height, width) >= smallest,
            f"the {datamodule.eval_split} images ({batch.fname[0]}) are {height} x {width} pixels; "
            f"{who} takes at least {smallest} x {smallest}: {why}",
        )
    check_adjoint(batch.physics(), batch.y, f"problem={problem.name}")


def check_adjoint(physics: Physics, y: Tensor, who: str, tolerance: float = 1e-3) -> None:
    """``<A x, v> = <x, A^H v>`` on random ``x`` and ``v`` (real inner products of the stored tensors): a
    physics whose ``A_adjoint`` is not the adjoint of ``A`` would train every network on a wrong gradient. A
    physics that lacks data for ``A`` (MRI without coil maps, for a network that estimates them) is skipped."""
    generator = torch.Generator().manual_seed(0)
    try:
        x = torch.randn(physics.A_adjoint(y).shape, generator=generator, dtype=y.dtype)
        v = physics.apply_mask(torch.randn(y.shape, generator=generator, dtype=y.dtype))
        forward, backward = (physics.A(x) * v).sum().item(), (x * physics.A_adjoint(v)).sum().item()
    except MissingOperatorData:
        return
    gap = abs(forward - backward) / max(abs(forward), abs(backward), 1e-12)
    require(
        gap <= tolerance,
        f"{who}'s physics ({type(physics).__name__}) fails the adjoint test: <A x, v> = {forward:.6g} but "
        f"<x, A_adjoint v> = {backward:.6g} (relative gap {gap:.1e} > {tolerance:g}); A_adjoint must be the "
        f"adjoint of A",
    )


def check_trainer(trainer: DictConfig) -> None:
    accelerator = trainer.get("accelerator", "auto")
    require(
        accelerator in ACCELERATORS,
        f"trainer.accelerator={accelerator!r} is unknown; allowed: {', '.join(ACCELERATORS)}",
    )
    devices = trainer.get("devices", "auto")
    require(
        devices in ("auto", -1) or (_is_int(devices) and devices >= 1) or isinstance(devices, ListConfig | list),
        f"trainer.devices={devices!r} is invalid; allowed: auto, -1 (all), an integer >= 1, or a list of indices",
    )
