"""Bring your own trained network: every checkpoint format users have loads through ``ckpt_path=`` and predicts what
the network that wrote it predicts; a file that does not fit names the overrides that would."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from fastmri.losses import SSIMLoss
from fastmri.models import VarNet
from torch import nn

from spade_pl.core.errors import SpadeInputError
from spade_pl.job.pipeline import prepare, run
from spade_pl.training.lightning_module import ReconModule

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# the tiny E2E-VarNet of conftest.TINY_NETWORKS, as fastmri's own class
TINY_VARNET = dict(num_cascades=2, sens_chans=2, sens_pools=2, chans=4, pools=2)
RSS = "+network.model.output=rss"


def fastmri_varnet(seed: int = 0, **sizes: int) -> VarNet:
    torch.manual_seed(seed)
    return VarNet(**{**TINY_VARNET, **sizes}).eval()


class UserVarNetModule(L.LightningModule):
    """A user's own LightningModule with fastMRI's VarNet as a sub-module (its weights under ``model.``)."""

    def __init__(self, varnet: VarNet):
        super().__init__()
        self.save_hyperparameters(ignore=["varnet"])
        self.model = varnet
        self.loss = SSIMLoss()

    def training_step(self, batch, batch_idx):
        return self.model.cascades[0].dc_weight.sum() * 0.0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def lightning_checkpoint(module: L.LightningModule, path) -> None:
    """A real Lightning checkpoint (callbacks, loops, optimizer states, hyper-parameters) of ``module``."""
    trainer = L.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=path.parent,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([torch.zeros(1)]))
    trainer.save_checkpoint(path)


def fastmri_module_checkpoint(varnet: VarNet) -> dict:
    """The layout of a checkpoint of fastMRI's own ``VarNetModule`` (fastmri.pl_modules; Lightning 1.x, which
    cannot be imported with Lightning 2): the VarNet under ``varnet.``, its SSIM loss's window, its sizes in
    ``hyper_parameters``, optimizer and scheduler states."""
    state = {f"varnet.{k}": v for k, v in varnet.state_dict().items()} | {"loss.w": SSIMLoss().w}
    optimizer = torch.optim.Adam(varnet.parameters(), lr=3e-4)
    hyper = {**TINY_VARNET, "lr": 3e-4, "lr_step_size": 40, "lr_gamma": 0.1, "weight_decay": 0.0}
    return {
        "epoch": 49,
        "global_step": 1000,
        "pytorch-lightning_version": "1.4.0",
        "state_dict": state,
        "callbacks": {"ModelCheckpoint": {"monitor": "validation_loss", "best_model_score": torch.tensor(0.1)}},
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [{"step_size": 40, "gamma": 0.1, "base_lrs": [3e-4], "last_epoch": 49}],
        "hparams_name": "kwargs",
        "hyper_parameters": {**hyper, "num_log_images": 16},
    }


def write_format(fmt: str, varnet: VarNet, path) -> None:
    if fmt == "state_dict":  # fastMRI's released *_leaderboard_state_dict.pt
        torch.save(varnet.state_dict(), path)
    elif fmt == "nested":  # plain PyTorch training code: {"model": ..., "optimizer": ...}
        optimizer = torch.optim.Adam(varnet.parameters())
        torch.save({"model": varnet.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3}, path)
    elif fmt == "fastmri_module":
        torch.save(fastmri_module_checkpoint(varnet), path)
    elif fmt == "lightning":
        lightning_checkpoint(UserVarNetModule(varnet), path)
    elif fmt == "spade_pl":  # a spade-pl checkpoint of a network that holds these weights
        from spade_pl.models import E2EVarNet

        network = E2EVarNet(**TINY_VARNET)
        network.varnet.load_state_dict(varnet.state_dict())
        module = ReconModule(network, objective=None, optimizer=None)
        torch.save({"state_dict": module.state_dict(), "spade_pl_network": {}}, path)


def fastmri_kspace(varnet: VarNet, y, mask, num_low) -> torch.Tensor:
    """fastMRI's VarNet.forward up to its predicted multi-coil k-space (its own modules, its own order)."""
    maps = varnet.sens_net(y, mask, num_low)
    kspace = y.clone()
    for cascade in varnet.cascades:
        kspace = cascade(kspace, y, mask, maps)
    return kspace


@pytest.mark.parametrize("fmt", ["state_dict", "nested", "fastmri_module", "lightning", "spade_pl"])
def test_every_format_predicts_what_fastmri_varnet_predicts(make_cfg, tmp_path, fmt, caplog):
    varnet = fastmri_varnet()
    path = tmp_path / f"{fmt}.ckpt"
    write_format(fmt, varnet, path)
    run = prepare(make_cfg("stage=test", f"ckpt_path={path}", RSS))
    with caplog.at_level("INFO"):
        network, structure = run.networks.load(path)
    assert structure is None
    loaded = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded "))
    assert "E2EVarNet(num_cascades=2, chans=4, pools=2, sens_chans=2, sens_pools=2, output=rss), dense" in loaded
    assert f"{sum(p.numel() for p in varnet.parameters()):,} parameters" in loaded
    batch = next(iter(run.datamodule.test_dataloader()))
    num_low = int(batch.num_low_frequencies[0])
    with torch.no_grad():
        expected_k = fastmri_kspace(varnet, batch.y, batch.mask, num_low)
        expected_rss = varnet(batch.y, batch.mask, num_low)
        kspace = network.eval().coil_kspace(batch.y, batch.physics())
        image = network(batch.y, batch.physics())
    assert (kspace - expected_k).abs().max() <= 1e-5
    assert (image[..., 0] - expected_rss).abs().max() <= 1e-5 and not image[..., 1].any()


def test_the_loaded_line_names_the_format_and_where_the_weights_were(make_cfg, tmp_path, caplog):
    sources = {}
    for fmt in ("state_dict", "fastmri_module", "lightning"):
        write_format(fmt, fastmri_varnet(), tmp_path / f"{fmt}.ckpt")
        with caplog.at_level("INFO"):
            prepare(make_cfg("stage=test")).networks.load(tmp_path / f"{fmt}.ckpt")
        sources[fmt] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded ")][-1]
    assert ": state_dict of fastmri VarNet;" in sources["state_dict"]
    assert ": Lightning checkpoint of fastmri VarNet, weights under 'varnet.';" in sources["fastmri_module"]
    assert ": Lightning checkpoint of fastmri VarNet, weights under 'model.';" in sources["lightning"]


def test_another_size_names_the_overrides_that_fit(make_cfg, tmp_path):
    torch.save(fastmri_varnet(num_cascades=3, chans=6).state_dict(), tmp_path / "big.pt")
    with pytest.raises(SpadeInputError) as err:
        prepare(make_cfg("stage=test")).networks.load(tmp_path / "big.pt")
    message = str(err.value)
    assert "has num_cascades=3, chans=6 (configured: num_cascades=2, chans=4)" in message
    assert message.endswith("add network.model.num_cascades=3 network.model.chans=6") and "\n" not in message
    # the overrides it names do fit
    run = prepare(make_cfg("stage=test", "network.model.num_cascades=3", "network.model.chans=6"))
    assert sum(p.numel() for p in run.networks.load(tmp_path / "big.pt")[0].parameters()) == sum(
        p.numel() for p in fastmri_varnet(num_cascades=3, chans=6).parameters()
    )


def test_hyper_parameters_of_a_lightning_checkpoint_name_the_overrides(make_cfg, tmp_path):
    """fastMRI's VarNetModule states its sizes; a mismatch is one line from them and the shapes."""
    checkpoint = fastmri_module_checkpoint(fastmri_varnet(sens_chans=3))
    checkpoint["hyper_parameters"]["sens_chans"] = 3
    torch.save(checkpoint, tmp_path / "module.ckpt")
    with pytest.raises(SpadeInputError, match=r"add network.model.sens_chans=3$"):
        prepare(make_cfg("stage=test")).networks.load(tmp_path / "module.ckpt")


class StudentTeacher(nn.Module):
    def __init__(self, student: nn.Module, teacher: nn.Module):
        super().__init__()
        self.student, self.teacher = student, teacher


def test_two_networks_in_one_file_need_ckpt_prefix(make_cfg, tmp_path):
    student, teacher = fastmri_varnet(seed=1), fastmri_varnet(seed=2)
    torch.save({"state_dict": StudentTeacher(student, teacher).state_dict()}, tmp_path / "two.ckpt")
    with pytest.raises(SpadeInputError, match=r"under several prefixes \('student.', 'teacher.'\); choose one"):
        prepare(make_cfg("stage=test")).networks.load(tmp_path / "two.ckpt")
    network, _ = prepare(make_cfg("stage=test", "ckpt_prefix=teacher")).networks.load(tmp_path / "two.ckpt")
    assert torch.equal(network.varnet.cascades[1].dc_weight, teacher.cascades[1].dc_weight)
    with pytest.raises(SpadeInputError, match=r"ckpt_prefix=pupil. matches no tensor .* start with student., teacher."):
        prepare(make_cfg("stage=test", "ckpt_prefix=pupil.")).networks.load(tmp_path / "two.ckpt")


def test_e2e_varnet_fastmri_is_fastmris_leaderboard_network(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg("network=e2e_varnet_fastmri", tiny=False)
    network = instantiate(cfg.network.model)
    assert sum(p.numel() for p in network.parameters()) == 29_936_966
    assert network.output == "rss" and network.architecture == dict(
        num_cascades=12, sens_chans=8, sens_pools=4, chans=18, pools=4
    )
    assert dict(cfg.problem.mask) == {
        "mask_type": "equispaced_fraction",
        "accelerations": [4, 8],
        "center_fractions": [0.08, 0.04],
    }
    assert cfg.problem.metric_convention == "fastmri" and cfg.network.loss == "ssim"
    # the user's choice still wins
    assert make_cfg("network=e2e_varnet_fastmri", "mask=reference", tiny=False).problem.mask.mask_type == "uniform"


OWN_NETWORK = (
    "problem=sr",
    "network=custom",
    "network.model={_target_: custom_network.UnrolledDnCNN, channels: 1, iterations: 2, features: 8, depth: 3}",
)


class UserModule(L.LightningModule):
    """A user's Lightning module around their own network (``self.net``), with a loss module of its own."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.criterion = nn.L1Loss()

    def training_step(self, batch, batch_idx):
        return self.net.step_sizes.sum() * 0.0

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters())


@pytest.mark.parametrize("fmt", ["state_dict", "lightning"])
def test_your_own_network_from_its_own_checkpoint_is_pruned_and_fine_tuned(make_cfg, tmp_path, monkeypatch, fmt):
    """The README's own network, trained elsewhere and saved as its state_dict or a Lightning checkpoint, is the
    teacher of the whole job (nothing is pre-trained again) and gets pruned and fine-tuned."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from custom_network import UnrolledDnCNN

    torch.manual_seed(3)
    net = UnrolledDnCNN(channels=1, iterations=2, features=8, depth=3)
    path = tmp_path / f"own.{fmt}"
    if fmt == "state_dict":
        torch.save(net.state_dict(), path)
    else:
        lightning_checkpoint(UserModule(net), path)
    tested = run(make_cfg(*OWN_NETWORK, "stage=test", f"ckpt_path={path}", "debug=limit"))
    job = run(
        make_cfg(
            *OWN_NETWORK,
            f"ckpt_path={path}",
            "finetune=distill",
            "debug=limit",
            "benchmark.repeats=1",
            "benchmark.warmup=0",
        )
    )
    assert job["dense_checkpoint"] == str(path) and not (tmp_path / "run" / "checkpoints" / "pretrain").exists()
    assert job["models"]["dense"]["mean"] == tested["models"]["model"]["mean"]
    assert job["pruning"]["dncnn0"]["widths_before"] == [8] and job["pruning"]["dncnn0"]["widths_after"] == [4]
    assert "pruned + distill" in job["models"]
    sys.modules.pop("custom_network", None)


@pytest.mark.parametrize("fmt", ["state_dict", "spade_pl"])
def test_a_checkpoint_missing_a_tensor_is_one_line_naming_it(make_cfg, tmp_path, fmt):
    varnet = fastmri_varnet()
    path = tmp_path / f"{fmt}.ckpt"
    write_format(fmt, varnet, path)
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint.get("state_dict", checkpoint)
    dropped = next(k for k in state if k.endswith("cascades.1.dc_weight"))
    del state[dropped]
    torch.save(checkpoint, path)
    with pytest.raises(SpadeInputError, match=rf"^checkpoint {path} .*cascades\.1\.dc_weight") as err:
        prepare(make_cfg("stage=test", RSS)).networks.load(path)
    assert "\n" not in str(err.value)
