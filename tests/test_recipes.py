"""Fine-tuning recipes are configs of their own (conf/recipe/<network>_<strategy>.yaml), chosen from the network and
the strategy; the teacher cache key is made of what shapes the teacher and nothing of the fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from conftest import compose_tiny
from spade_pl.training.teacher_cache import teacher_key

SHIPPED_KEYS = json.loads((Path(__file__).parent / "data" / "teacher_keys.json").read_text())
OWN_NETWORK = ("network=custom", "network.model={_target_: custom_network.UnrolledDnCNN, channels: 2}")


def leaves(node: DictConfig, prefix: str) -> list[str]:
    """Every numeric or boolean leaf under ``node`` (dotted paths), the values a user tunes."""
    found = []
    for key in node:
        value = node._get_node(key)
        path = f"{prefix}.{key}"
        if isinstance(value, DictConfig):
            found += leaves(value, path)
        elif not OmegaConf.is_interpolation(node, key) and isinstance(node[key], int | float) and key != "_partial_":
            found.append(path)
    return found


def changed(value):
    return (not value) if isinstance(value, bool) else value * 2 + 1


@pytest.mark.parametrize("shipped", sorted(SHIPPED_KEYS))
def test_every_shipped_config_keeps_its_teacher_key(tmp_path, shipped):
    """No cached teacher is invalidated: the keys are those the configs had before the recipes moved out of the
    network configs (recorded with the cache at /spade-pl-cache: the data's location is part of the key)."""
    cfg = compose_tiny(tmp_path, Path("/spade-pl-cache"), *shipped.split(), tiny=False)
    assert teacher_key(cfg) == SHIPPED_KEYS[shipped]


@pytest.mark.parametrize("strategy", ["distill", "supervised", "selfsup"])
def test_no_fine_tuning_setting_changes_the_teacher_key(make_cfg, strategy):
    cfg = make_cfg(f"finetune={strategy}")
    base = teacher_key(cfg)
    paths = [
        *leaves(cfg.finetune, "finetune"),
        *leaves(cfg.prune, "prune"),
        "finetune.max_epochs",
        "network.finetune_epochs",
        "benchmark.repeats",
    ]
    assert {"finetune.optimizer.lr", "prune.ratio"} <= set(paths)
    for path in paths:
        tuned = cfg.copy()
        OmegaConf.update(tuned, path, changed(OmegaConf.select(cfg, path)))
        assert teacher_key(tuned) == base, path


def test_every_input_that_shapes_the_teacher_changes_its_key(make_cfg):
    cfg = make_cfg()
    base = teacher_key(cfg)
    paths = [
        *(p for p in leaves(cfg.network, "network") if p != "network.finetune_epochs"),  # the pruned network's
        *leaves(cfg.pretrain, "pretrain"),
        *leaves(cfg.data.builder, "data.builder"),
        "data.batch_size",
        "problem.mask.accelerations",
        "seed",
    ]
    assert {"network.model.chans", "network.lr", "network.pretrain_epochs", "data.builder.size"} <= set(paths)
    for path in paths:
        shaped = cfg.copy()
        value = OmegaConf.select(cfg, path)
        OmegaConf.update(shaped, path, [changed(v) for v in value] if OmegaConf.is_list(value) else changed(value))
        assert teacher_key(shaped) != base, path


def selfsup(make_cfg, *overrides) -> tuple[int, float, float | None, float, float]:
    ft = make_cfg(*overrides, "finetune=selfsup", tiny=False).finetune
    return ft.max_epochs, ft.optimizer.lr, ft.ema_decay, ft.objective.ei_weight, ft.objective.norm


def test_each_network_brings_its_recipe_and_others_get_the_strategys_own(make_cfg, monkeypatch):
    assert selfsup(make_cfg, "network=e2e_varnet") == (30, 5e-3, 0.98, 10.0, 1)
    assert selfsup(make_cfg, "network=deq") == (10, 1e-3, None, 5.0, 2)
    assert selfsup(make_cfg, "problem=sr", "network=deq_sr") == (10, 1e-3, None, 10.0, 2)
    for generic in ("e2e_varnet_paper", "deq_paper", "varnet"):
        assert selfsup(make_cfg, f"network={generic}") == (10, 1e-3, None, 5.0, 2)
    rates = {
        (n, s): make_cfg(f"network={n}", f"finetune={s}", tiny=False).finetune.optimizer.lr
        for n in ("e2e_varnet", "e2e_varnet_paper", "e2e_varnet_fastmri")
        for s in ("supervised", "distill")
    }
    assert rates == {
        ("e2e_varnet", "supervised"): 5e-3,
        ("e2e_varnet", "distill"): 3e-3,
        ("e2e_varnet_paper", "supervised"): 1e-3,
        ("e2e_varnet_paper", "distill"): 1e-3,
        ("e2e_varnet_fastmri", "supervised"): 3e-4,
        ("e2e_varnet_fastmri", "distill"): 3e-4,
    }
    deq = make_cfg("network=deq", tiny=False)
    assert (deq.pretrain.max_epochs, deq.finetune.max_epochs, deq.data.batch_size) == (12, 10, 1)
    scheduler = instantiate(deq.finetune.scheduler)(optimizer=torch.optim.SGD([torch.zeros(1, requires_grad=True)]))
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and scheduler.T_max == 10
    # a network of your own inherits no other network's tuned recipe: the strategy's generic settings
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples"))
    assert selfsup(make_cfg, *OWN_NETWORK) == (10, 1e-3, None, 5.0, 2)
    own = make_cfg(*OWN_NETWORK, "finetune=distill", tiny=False).finetune
    assert (own.max_epochs, own.optimizer.lr, own.scheduler) == (10, 1e-3, None)


def test_a_recipe_can_be_chosen_or_overridden_on_the_command_line(make_cfg):
    borrowed = make_cfg("network=varnet", "finetune=distill", "recipe=e2e_varnet_distill", tiny=False).finetune
    assert (borrowed.max_epochs, borrowed.optimizer.lr) == (10, 3e-3)  # its tuned rate; the network's epochs
    assert make_cfg("finetune=selfsup", "finetune.optimizer.lr=7e-4", tiny=False).finetune.optimizer.lr == 7e-4
    assert make_cfg("finetune=selfsup", "finetune.max_epochs=7", tiny=False).finetune.max_epochs == 7
