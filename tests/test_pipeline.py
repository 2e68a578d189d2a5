"""The composed real configs drive the real pipeline (fast dev runs); the CLI turns bad input into one line."""

import json
from pathlib import Path

import h5py
import lightning as L
import pytest
import torch

from conftest import spade_cli
from spade_pl.job.pipeline import run
from spade_pl.models.base import MBDLNetwork
from spade_pl.objectives.base import Objective
from spade_pl.reporting.results import summary_record


def test_pretrain_then_test_stage(make_cfg, tmp_path):
    out = run(make_cfg("stage=pretrain", "debug=fdr"))
    ckpt = out["checkpoint"]
    results = run(make_cfg("stage=test", f"ckpt_path={ckpt}", "debug=fdr"))
    assert set(results["models"]) == {"zero-filled", "model"}
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written["models"]["model"]["mean"] == results["models"]["model"]["mean"]
    md = (tmp_path / "run" / "results.md").read_text()
    assert "| zero-filled |" in md and "| model |" in md
    assert (tmp_path / "run" / "results.png").stat().st_size > 0


def test_transfer_evaluation_scores_on_another_mask_and_labels_it(make_cfg, tmp_path, pretrained):
    """stage=test with data.eval_mask: the same model scored on the training mask and at another acceleration;
    fewer measured columns cost PSNR, and the report and the sweep table say which mask was scored."""
    ckpt = pretrained("debug=fdr")
    same = run(make_cfg("stage=test", f"ckpt_path={ckpt}", "debug=fdr"))
    other = run(make_cfg("stage=test", f"ckpt_path={ckpt}", "debug=fdr", "data.eval_mask.accelerations=[12]"))
    assert "transfer" not in same
    assert other["transfer"]["eval_mask"]["accelerations"] == [12]
    assert other["transfer"]["trained_mask"]["accelerations"] == [6]
    assert other["models"]["zero-filled"]["mean"]["psnr"] < same["models"]["zero-filled"]["mean"]["psnr"]
    assert "**Transfer evaluation**" in (tmp_path / "run" / "results.md").read_text()
    assert summary_record(other)["scored_on"] == "mask_type=uniform accelerations=[12] center_fractions=[0.08]"
    assert "scored_on" not in summary_record(same)


def test_pretrain_learns_something(make_cfg):
    """A couple of real epochs on the tiny data: the dense model must beat an untrained one on test."""
    dense_only = ("stage=spade", "prune.ratio=0", "finetune=none")
    untrained = run(make_cfg(*dense_only, "pretrain.max_epochs=0"))
    trained = run(make_cfg(*dense_only, "pretrain.max_epochs=4"))
    assert trained["models"]["dense"]["mean"]["ssim"] > untrained["models"]["dense"]["mean"]["ssim"] + 0.05


# what each logger writes when it works (offline): a file its own reader would open
LOGGER_FILES = {
    "csv": "csv/**/metrics.csv",
    "tensorboard": "tensorboard/**/events.out.tfevents.*",
    "wandb": "wandb/offline-run-*/run-*.wandb",
}


@pytest.mark.parametrize("logger", sorted(LOGGER_FILES))
def test_every_logger_works_offline(make_cfg, tmp_path, logger, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    run(make_cfg("stage=pretrain", "debug=limit", f"logger={logger}"))  # fast_dev_run mutes loggers
    written = [p for p in (tmp_path / "run").glob(LOGGER_FILES[logger]) if p.stat().st_size > 0]
    assert written, sorted(str(p) for p in (tmp_path / "run").rglob("*"))[:40]
    if logger == "csv":
        assert "val/loss" in written[0].read_text().splitlines()[0]


def test_cli_bad_input_is_one_line_and_exit_2_in_a_real_process(tmp_path):
    """The bad-input suite runs the CLI in-process; this is the real ``python -m spade_pl`` process."""
    proc = spade_cli("stage=test", "ckpt_path=/no/such.ckpt", f"paths.root_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "error: checkpoint /no/such.ckpt does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_unknown_group_option_is_hydras_message(tmp_path):
    proc = spade_cli("network=nope", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Could not find 'network/nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_prune_stage_writes_a_pruned_checkpoint_that_loads(make_cfg, tmp_path, pretrained):
    dense_ckpt = pretrained("debug=fdr")
    results = run(make_cfg("stage=prune", f"ckpt_path={dense_ckpt}", "debug=fdr", "prune.ratio=0.5"))
    assert set(results["models"]) == {"zero-filled", "dense", "pruned (one-shot)"}
    report = results["pruning"]["cascade0"]
    assert report["widths_before"] == [4, 8, 16] and report["widths_after"] == [2, 4, 8]
    assert report["params_after"] < report["params_before"] and report["macs_after"] < report["macs_before"]
    md = (tmp_path / "run" / "results.md").read_text()
    assert "| cascade0 | 4/8/16 → 2/4/8 |" in md
    pruned_ckpt = results["pruned_checkpoint"]

    # Lightning's own loader rebuilds the pruned structure (no weights_only=False needed)

    from spade_pl.models import E2EVarNet
    from spade_pl.training.lightning_module import ReconModule

    net_cfg = dict(num_cascades=2, chans=4, pools=2, sens_chans=2, sens_pools=2)
    module = ReconModule.load_from_checkpoint(
        pruned_ckpt, network=E2EVarNet(**net_cfg), objective=None, optimizer=None, weights_only=True
    )
    assert module.network.priors()["cascade0"].down_sample_layers[0].layers[0].out_channels == 2
    # the pipeline's loader reproduces the test numbers of the pruned model exactly
    again = run(make_cfg("stage=test", f"ckpt_path={pruned_ckpt}", "debug=fdr"))
    assert again["models"]["model"]["mean"] == results["models"]["pruned (one-shot)"]["mean"]


def test_optimizer_trains_the_pruned_parameters(make_cfg):
    """Pruning in the callback's setup happens before configure_optimizers: a step changes pruned layers."""
    from spade_pl.job.pipeline import prepare
    from spade_pl.pruning.callback import SpadePruning
    from spade_pl.pruning.settings import PruneSettings

    r = prepare(make_cfg("debug=fdr", "finetune=supervised"))
    module = r.training.new_module(r.networks.new(), r.cfg.finetune)
    layer = lambda: module.network.priors()["cascade0"].down_sample_layers[0].layers[0]  # noqa: E731
    trainer = r.training.trainer("t", 1, [SpadePruning(PruneSettings(ratio=0.5))])
    seen = {}

    class Spy(L.Callback):
        def on_train_batch_start(self, *args):
            seen["before"] = layer().weight.detach().clone()
            seen["in_optimizer"] = any(
                p is layer().weight for g in trainer.optimizers[0].param_groups for p in g["params"]
            )

    trainer.callbacks.append(Spy())
    trainer.fit(module, datamodule=r.datamodule)
    assert layer().out_channels == 2
    assert seen["in_optimizer"]
    assert not torch.equal(seen["before"], layer().weight)


def test_full_spade_job_tiny(make_cfg, tmp_path, tiny_data_root):
    results = run(make_cfg("debug=limit", "finetune=distill", "benchmark.repeats=2", "benchmark.warmup=1"))
    assert list(results["models"]) == ["zero-filled", "dense", "pruned (one-shot)", "pruned + distill"]
    bench = json.loads((tmp_path / "run" / "benchmark.json").read_text())
    assert bench["pruned"]["params"] < bench["dense"]["params"]
    assert bench["mac_bound_forward"] > 1
    md = (tmp_path / "run" / "results.md").read_text()
    assert "Measured whole-forward speed-up" in md and "| pruned + distill |" in md
    volume = bench["volume"]  # the first test volume, all its slices in one forward
    first = sorted((tiny_data_root / "test").glob("*.h5"))[0]
    with h5py.File(first) as hf:
        assert volume["per_volume"][0]["fname"] == first.name and volume["slices"] == hf["kspace"].shape[0] > 1
    summary = json.loads((tmp_path / "run" / "results.json").read_text())["summary"]
    assert summary["model"] == "pruned + distill"
    assert summary["psnr"]["delta"] == pytest.approx(
        results["models"]["pruned + distill"]["mean"]["psnr"] - results["models"]["dense"]["mean"]["psnr"]
    )
    assert summary["per_volume"]["speedup"] == volume["speedup"]
    assert summary["per_slice"]["speedup"] == bench["speedup_forward"]
    assert 0 < summary["cap"]["untouched_share"] < 1 and summary["cap"]["mac_cap"] > bench["mac_bound_forward"]
    assert md.rstrip().endswith(summary["cap"]["line"]) and "## Summary: dense vs pruned + distill" in md
    assert f"= {bench['measured_over_bound']:.0%} of the MAC bound {bench['mac_bound_forward']:.2f}x" in md
    cost = results["cost"]  # what each stage cost, the cached teacher's as it was trained
    finetune = cost["finetune-distill"]
    assert finetune["epochs"] == 1 and finetune["optimizer_steps"] == 3 and finetune["device"] == "cpu"
    assert finetune["wall_s"] > 0 and cost["prune"]["wall_s"] > 0
    assert cost["pretrain"]["epochs"] == 1 and cost["pretrain"]["optimizer_steps"] > 0
    assert "| finetune-distill |" in md and "Cost per stage" in md


def _options(group: str) -> list[str]:
    from spade_pl.__main__ import config_dir

    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "override",
    [
        f"{g}={o}"
        for g in ("network", "finetune", "logger", "trainer", "data", "debug", "experiment", "problem")
        for o in _options(g)
    ],
)
def test_every_config_option_composes_and_builds(make_cfg, override):
    from hydra.utils import instantiate

    extra = ["data.root=/tmp"] if override in ("data=fastmri", "experiment=paper_e2e_varnet") else []
    if override.startswith("network=") and "_sr" in override:  # SR networks compose with their problem
        extra.append("problem=sr")
    if override == "network=custom":  # a network of your own: its class is the user's to give
        extra.append("network.model={_target_: spade_pl.models.DEQ, feats: 4, num_blocks: 1}")
    cfg = make_cfg(override, *extra, tiny=False)
    network = instantiate(cfg.network.model)
    assert isinstance(network, MBDLNetwork) and network.priors()
    assert all(any(p.requires_grad for p in prior.parameters()) for prior in network.priors().values())
    if cfg.finetune.get("objective"):
        objective = instantiate(cfg.finetune.objective)
        assert isinstance(objective, Objective) and isinstance(objective.uses_ground_truth, bool)
