"""Checks of config values that would otherwise fail late, deep, or silently wrong (``max_epochs=-1`` means
"train forever" to Lightning, ``num_cascades=0`` builds a network without cascades, ``seed=abc`` is a
traceback): each bad value is one line naming the key, the value and what is allowed, before any work."""

from __future__ import annotations

import math
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from spade_pl.benchmark.settings import BenchmarkSettings
from spade_pl.core.errors import SpadeInputError, require, require_int
from spade_pl.job.stages.finetune import adaptation_recipe
from spade_pl.training.trainers import build

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
    check_network_fits(cfg)
    require_int("seed", cfg.seed, 0)
    require(
        cfg.get("eval_split") in ("val", "test"), f"eval_split={cfg.get('eval_split')!r} is invalid; allowed: val, test"
    )
    init = cfg.finetune.get("init", "pruned")
    require(init in ("pruned", "scratch"), f"finetune.init={init!r} is invalid; allowed: pruned, scratch")
    budget = cfg.finetune.get("budget", "finetune")
    require(budget in ("finetune", "total"), f"finetune.budget={budget!r} is invalid; allowed: finetune, total")
    data = cfg.finetune.get("data", "train")
    require(data in ("train", "test"), f"finetune.data={data!r} is invalid; allowed: train, test (test-time)")
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
    check_objectives(cfg.finetune)
    check_network(OmegaConf.to_container(cfg.network.model, resolve=True))
    BenchmarkSettings(**cfg.benchmark)  # validates itself
    check_trainer(cfg.trainer)


def check_objectives(recipe: DictConfig) -> None:
    """Build the fine-tuning objective, and the test-time adaptation's, once: a bad value in either is one
    line now, not after the teacher has trained."""
    if recipe.get("objective"):
        build(recipe.objective)
    if recipe.get("test_time") and recipe.get("objective"):
        try:
            build(adaptation_recipe(recipe).objective)
        except SpadeInputError as err:
            raise SpadeInputError(f"with finetune.test_time merged on (test-time adaptation): {err}") from None


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
