"""The main job: teacher reuse, ground-truth-free fine-tuning and selection, non-finite losses, bad input."""

import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from conftest import tiny_overrides
from spade_pl.core.errors import SpadeInputError
from spade_pl.data.mri.datamodule import FastMRIDataModule
from spade_pl.job.pipeline import prepare, run
from spade_pl.job.recipe import adaptation_recipe
from spade_pl.job.stages.finetune import fresh_network
from spade_pl.training.lightning_module import NonFiniteLossError

# a few batches, two fine-tuning epochs and a one-repetition benchmark: a whole job in seconds
SHORT_FINETUNE = ("debug=limit", "finetune.max_epochs=2", "benchmark.repeats=1", "benchmark.warmup=0")


@pytest.fixture
def poisoned_ground_truth(monkeypatch):
    """Every target that training or validation can see is NaN, whichever split they read (test-time adaptation
    fits on the test split): only the final report's datasets keep their ground truth."""
    original = FastMRIDataModule._dataset

    def poisoned(self, split, purpose="eval"):
        dataset = original(self, split, purpose)
        if purpose in ("train", "val") and not getattr(dataset.transform, "poisoned", False):
            inner = dataset.transform

            def transform(*args):
                sample = inner(*args)
                return sample._replace(target=torch.full_like(sample.target, float("nan")))

            transform.poisoned = True
            dataset.transform = transform
        return dataset

    monkeypatch.setattr(FastMRIDataModule, "_dataset", poisoned)


@pytest.fixture
def dense_ckpt(pretrained):
    return pretrained("debug=limit")


@pytest.mark.parametrize("data", ["train", "test"])
@pytest.mark.parametrize("strategy", ["distill", "selfsup"])
def test_ground_truth_free_strategies_train_and_select_without_ground_truth(
    make_cfg, dense_ckpt, poisoned_ground_truth, strategy, data, tmp_path
):
    cfg = make_cfg(
        f"finetune={strategy}",
        f"finetune.data={data}",
        f"ckpt_path={dense_ckpt}",
        *SHORT_FINETUNE,
    )
    out = run(cfg)
    checkpoint = torch.load(out["finetuned_checkpoint"], weights_only=True)
    recipe = adaptation_recipe(cfg.finetune) if data == "test" else cfg.finetune
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(recipe.optimizer.lr)
    # the default E2E-VarNet averages its weights for self-supervised fine-tuning, not for test-time adaptation
    assert ("averaging_state" in checkpoint) == (strategy == "selfsup" and data == "train")
    name = f"pruned + {strategy}" + (" (test-time)" if data == "test" else "")
    tuned = out["models"][name]["mean"]
    assert all(torch.isfinite(torch.tensor(v)) for v in tuned.values())
    assert Path(out["finetuned_checkpoint"]).name == "best.ckpt"  # selected by the finite, GT-free val/loss
    markdown = (tmp_path / "run" / "results.md").read_text()
    assert f"| {name} |" in markdown
    assert ("test-time: the pruned network was fine-tuned on the measurements" in markdown) == (data == "test")
    (metrics,) = (tmp_path / "run" / "csv").glob("finetune-*/metrics.csv")
    logged = set(metrics.read_text().splitlines()[0].split(","))
    terms = {"val/selfsup_mc", "val/selfsup_ei", "val/selfsup_split"} if strategy == "selfsup" else set()
    assert terms <= logged and not {"val/psnr", "val/ssim"} & logged  # the terms, never a ground-truth metric


def test_test_time_adaptation_is_refused_for_the_supervised_strategy(make_cfg, dense_ckpt):
    with pytest.raises(SpadeInputError, match="finetune.data=test adapts to the test split's measurements"):
        run(make_cfg("finetune=supervised", "finetune.data=test", f"ckpt_path={dense_ckpt}", "debug=limit"))


def test_supervised_reads_ground_truth_so_poisoned_data_stops_it_with_a_clear_error(
    make_cfg, dense_ckpt, poisoned_ground_truth, tmp_path
):
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss nan at step 0 \(epoch 0\)"):
        run(make_cfg("finetune=supervised", f"ckpt_path={dense_ckpt}", "debug=limit"))


@pytest.mark.parametrize("network", ["e2e_varnet", "deq"])  # a diverging DEQ included
def test_non_finite_loss_keeps_the_last_good_checkpoint(make_cfg, monkeypatch, tmp_path, network):
    from spade_pl.objectives.supervised import Supervised

    calls = {"n": 0}
    original = Supervised.forward

    def nan_after_first_epoch(self, batch, student, teacher=None):
        loss, logs = original(self, batch, student, teacher)
        calls["n"] += 1 if student.training else 0
        return (loss * float("nan") if calls["n"] > 3 else loss), logs

    monkeypatch.setattr(Supervised, "forward", nan_after_first_epoch)
    with pytest.raises(NonFiniteLossError, match="the last good checkpoint is kept"):
        run(make_cfg("stage=pretrain", "debug=limit", "pretrain.max_epochs=3", f"network={network}"))
    last = tmp_path / "run" / "checkpoints" / "pretrain" / "last.ckpt"
    assert last.is_file()
    assert torch.load(last, weights_only=True)["epoch"] == 0  # written after the good epoch


def test_teacher_is_trained_once_and_reused_across_a_sweep(make_cfg, tmp_path):
    # a seed no other test uses: the session-wide cache has no teacher for this config yet
    common = ("debug=limit", "finetune=none", "benchmark.repeats=1", "benchmark.warmup=0", "seed=777")
    first = run(make_cfg("prune.ratio=0.5", *common))
    assert (tmp_path / "run" / "checkpoints" / "pretrain").is_dir()  # trained here
    second_cfg = make_cfg("prune.ratio=0.25", *common)
    with open_dict(second_cfg):  # a sweep job: its own output folder
        second_cfg.paths.output_dir = str(tmp_path / "run_second")
    second = run(second_cfg)
    assert second["dense_checkpoint"] == first["dense_checkpoint"]
    assert not (tmp_path / "run_second" / "checkpoints" / "pretrain").exists()  # reused, not retrained
    assert second["models"]["dense"] == first["models"]["dense"]


def test_no_teacher_and_training_disabled_is_refused(make_cfg):
    with pytest.raises(SpadeInputError, match="no dense teacher for this config .* pretrain.train_if_missing=false"):
        run(make_cfg("finetune=distill", "pretrain.train_if_missing=false", "debug=fdr", "seed=12345"))


def test_collect_makes_one_table_for_a_sweep(make_cfg, tmp_path, capsys):
    from spade_pl.reporting.collect import main as collect

    common = ("debug=limit", "finetune=supervised", "benchmark.repeats=1", "benchmark.warmup=0")
    run(make_cfg("prune.ratio=0.5", *common))
    (tmp_path / "run").rename(tmp_path / "sweep_0")
    run(make_cfg("prune.ratio=0.25", *common))
    (tmp_path / "run").rename(tmp_path / "sweep_1")
    assert collect([str(tmp_path / "sweep_0"), str(tmp_path / "sweep_1"), "--out", str(tmp_path)]) == 0
    md = (tmp_path / "sweep.md").read_text().splitlines()
    assert md[0].startswith("| ratio | strategy | dense PSNR | one-shot PSNR | fine-tuned PSNR |") and len(md) == 4
    assert "| 0.25 | supervised |" in md[2] and "| 0.5 | supervised |" in md[3]  # sorted by strategy, ratio
    assert (tmp_path / "sweep.csv").read_text().count("\n") == 3
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    assert collect([str(tmp_path / "nothing")]) == 2
    assert "error: not a folder" in capsys.readouterr().err


def test_collect_aggregates_the_jobs_that_differ_only_in_seed(make_cfg, tmp_path):
    from spade_pl.reporting.collect import main as collect

    common = ("debug=limit", "finetune=supervised", "benchmark.repeats=1", "benchmark.warmup=0")
    finetuned = {}
    for folder, overrides in (("a", ("seed=42",)), ("b", ("seed=1",)), ("c", ("prune.ratio=0.25", "seed=1"))):
        finetuned[folder] = run(make_cfg("prune.ratio=0.5", *common, *overrides))["models"]["pruned + supervised"]
        (tmp_path / "run").rename(tmp_path / folder)
    assert collect([str(tmp_path / f) for f in "abc"] + ["--out", str(tmp_path)]) == 0
    text = (tmp_path / "sweep.md").read_text()
    section = text.split("Over seeds", 1)[1].strip().splitlines()
    assert len(section) == 5  # title, blank, header, rule, one setting: the 0.25 job has one seed only
    values = [finetuned["b"]["mean"]["psnr"], finetuned["a"]["mean"]["psnr"]]  # in seed order: 1, 42
    mean, std = statistics.mean(values), statistics.stdev(values)
    assert "prune.ratio=0.5" in section[4] and "| 1, 42 |" in section[4]
    assert f"{mean:.2f} ± {std:.2f} ({values[0]:.2f}, {values[1]:.2f})" in section[4]
    seeds = (tmp_path / "seeds.csv").read_text().splitlines()
    assert len(seeds) == 2 and f"{mean}" in seeds[1]


@pytest.mark.parametrize("network", ["deq", "varnet"])
@pytest.mark.parametrize("strategy", ["distill", "selfsup"])
def test_main_job_runs_for_networks_with_given_maps(make_cfg, tmp_path, network, strategy):
    out = run(
        make_cfg(
            f"network={network}",
            f"finetune={strategy}",
            "debug=limit",
            "benchmark.repeats=1",
            "benchmark.warmup=0",
        )
    )
    assert list(out["models"])[-1] == f"pruned + {strategy}"
    assert all(torch.isfinite(torch.tensor(v)) for v in out["models"][f"pruned + {strategy}"]["mean"].values())
    bench = out["benchmark"]
    assert bench["pruned"]["params"] < bench["dense"]["params"]
    if network == "deq":  # the solver's work is reported for both, at the same tolerance
        assert bench["dense"]["solver_iterations"]["min"] >= 1 and bench["pruned"]["solver_iterations"]["min"] >= 1
        assert "solver iterations" in (tmp_path / "run" / "benchmark.md").read_text()


def test_network_needing_maps_on_data_without_maps_says_how_to_compute_them(make_cfg, tmp_path):
    import numpy as np

    from spade_pl.data.mri.hdf5 import write_multicoil_file

    data = tmp_path / "fastmri_like"
    for split in ("train", "val", "test"):
        (data / split).mkdir(parents=True)
        kspace = np.random.default_rng(0).normal(size=(1, 2, 16, 16)).astype(np.complex64)
        write_multicoil_file(data / split / f"{split}.h5", kspace)  # real fastMRI files carry no maps
    cfg = make_cfg("network=varnet", "data=fastmri", f"data.root={data}", "debug=fdr", tiny=False)
    with pytest.raises(SpadeInputError, match=r"network=varnet needs coil maps .*python -m spade_pl.data.mri.espirit "):
        run(cfg)


def test_selfsup_criterion_scores_each_checkpoint_on_the_validation_measurements(make_cfg, dense_ckpt, cache_dir):
    """experiments/selfsup_criterion.py: one row per checkpoint (dense or pruned), the weight-free terms averaged
    over the draws."""
    pruned = run(make_cfg("finetune=none", f"ckpt_path={dense_ckpt}", *SHORT_FINETUNE))["pruned_checkpoint"]
    script = Path(__file__).parents[1] / "experiments" / "selfsup_criterion.py"
    checkpoints = [str(dense_ckpt), str(pruned), str(pruned)]
    args = ["--draws", "2", *checkpoints, *tiny_overrides(), f"paths.cache_dir={cache_dir}"]
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| /")]
    assert [row[0][2:] for row in rows] == checkpoints
    assert rows[1] == rows[2] and rows[0][1:] != rows[1][1:]  # deterministic, and it tells the models apart
    assert all(float(value.strip(" |")) > 0 for row in rows for value in row[1:])


def test_frozen_priors_keep_their_weights_through_fine_tuning(make_cfg, dense_ckpt):
    cfg = make_cfg("finetune=selfsup", "finetune.frozen_priors=[sens]", f"ckpt_path={dense_ckpt}", *SHORT_FINETUNE)
    out = run(cfg)
    dense = prepare(cfg).networks.load(dense_ckpt)[0].priors()
    tuned = prepare(cfg).networks.load(out["finetuned_checkpoint"])[0].priors()
    kept = dense["sens"].state_dict()  # (the weight average of a constant rounds to it within float precision)
    assert all(torch.allclose(v, kept[k], rtol=0, atol=1e-6) for k, v in tuned["sens"].state_dict().items())
    last = dense["cascade0"].state_dict()["up_conv.1.1.bias"], tuned["cascade0"].state_dict()["up_conv.1.1.bias"]
    assert not torch.allclose(*last, rtol=0, atol=1e-6)  # the output layer's bias (never pruned) trained


def test_test_time_adaptation_takes_its_own_ei_weight_and_norm(make_cfg):
    """The default E2E-VarNet weighs EI 10 with L1 errors on the training split, test-time adaptation the
    problem's 5 with squared errors."""
    objective = make_cfg("finetune=selfsup").finetune.objective
    assert (objective.ei_weight, objective.norm) == (10.0, 1)
    test_time = adaptation_recipe(make_cfg("finetune=selfsup", "finetune.data=test").finetune).objective
    assert (test_time.ei_weight, test_time.norm) == (5.0, 2)
    overrides = ("~finetune.test_time.objective",)
    recipe = adaptation_recipe(make_cfg("finetune=selfsup", "finetune.data=test", *overrides).finetune)
    assert (recipe.objective.ei_weight, recipe.objective.norm) == (10.0, 1)  # not given: the objective's own
    assert recipe.max_epochs == 30 and recipe.optimizer.lr == 3e-3 and recipe.ema_decay is None
    assert make_cfg("finetune=selfsup", "network=deq").finetune.objective.norm == 2  # networks without a choice


def test_weight_averaging_is_what_fine_tuning_selects_and_the_report_tests(make_cfg, dense_ckpt):
    cfg = make_cfg(
        "finetune=distill",
        "finetune.ema_decay=0.5",
        f"ckpt_path={dense_ckpt}",
        *SHORT_FINETUNE,
    )
    out = run(cfg)
    checkpoint = torch.load(out["finetuned_checkpoint"], weights_only=True)
    averaged, trained = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert checkpoint["averaging_state"]["n_averaged"] > 1
    moved = [k for k in trained if k.startswith("network.") and not torch.equal(trained[k], averaged[k])]
    assert moved  # the checkpoint keeps the average, not the last step's weights
    tested, _ = prepare(cfg).networks.load(Path(out["finetuned_checkpoint"]))
    for name, value in tested.state_dict().items():
        assert torch.equal(value, averaged[f"network.{name}"])


@pytest.mark.parametrize(
    "strategy, label",
    [("scratch", "scratch (pruned widths)"), ("scratch_distill", "scratch + distill (pruned widths)")],
)
def test_scratch_baselines_train_the_pruned_architecture_from_a_fresh_start(
    make_cfg, dense_ckpt, tmp_path, strategy, label
):
    """The baselines SPADE must beat: the widths pruning chose, freshly initialised (not the dense network's kept
    weights, not its initialisation), trained in the same job and reported under their own label; budget=total
    trains the teacher's epochs on top."""
    cfg = make_cfg(f"finetune={strategy}", f"ckpt_path={dense_ckpt}", "finetune.budget=total", *SHORT_FINETUNE)
    out = run(cfg)
    assert list(out["models"])[-1] == label and out["strategy"] == strategy and out["finetuned_model"] == label
    r = prepare(cfg)
    pruned, structure = r.networks.load(Path(out["pruned_checkpoint"]))
    fresh, again = fresh_network(r.networks, structure, r.cfg.seed), fresh_network(r.networks, structure, r.cfg.seed)
    kept, start = pruned.state_dict(), fresh.state_dict()
    assert {k: v.shape for k, v in kept.items()} == {k: v.shape for k, v in start.items()}
    assert all(torch.equal(start[k], again.state_dict()[k]) for k in start)  # seeded: the same start each time
    weights = [k for k, v in start.items() if v.dim() > 1]
    assert all(not torch.equal(start[k], kept[k]) for k in weights)
    epochs = (tmp_path / "run" / "csv" / f"finetune-{strategy}" / "metrics.csv").read_text().splitlines()
    trained = max(int(line.split(",")[0]) for line in epochs[1:]) + 1
    assert trained == cfg.finetune.max_epochs + cfg.pretrain.max_epochs
