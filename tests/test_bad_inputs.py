"""The bad-input suite: every bad config value, data file and checkpoint stops the real CLI before any long
work with exit code 2 and one line that names the value and what is allowed: no traceback, and no results file
that would look like a finished run. Each case runs ``spade_pl.__main__.cli`` in-process (as
``python -m spade_pl`` would) on the tiny data."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch
from fastmri.models import VarNet
from hydra.core.global_hydra import GlobalHydra

from conftest import TINY_NETWORKS, compose_tiny, tiny_overrides
from spade_pl.__main__ import cli
from spade_pl.data.mri.hdf5 import write_multicoil_file
from spade_pl.job.pipeline import run
from spade_pl.models import EDSR

TINY_FASTMRI = [*TINY_NETWORKS["e2e_varnet"], "logger=csv", "trainer.accelerator=cpu", "data.batch_size=2"]
DOCS = [Path(__file__).resolve().parents[1] / "docs" / "reliability.md"]
RESULT_FILES = ("results.json", "results.md", "results.png", "benchmark.json", "benchmark.md")

# (command-line overrides, a fragment of the one-line message); {data}/{ckpt} are filled in by the fixture
CONFIG_CASES = [
    ("prune.ratio=1.5", "prune.ratio=1.5 is invalid; allowed: 0 <= ratio < 1"),
    ("prune.ratio=-0.1", "prune.ratio=-0.1 is invalid"),
    ("prune.ratio=abc", "prune.ratio=abc is invalid"),
    ("prune.importance=taylor", "prune.importance='taylor' is unknown; allowed:"),
    ("prune.importance={{_target_:torch.nn.Linear}}", "is not a torch-pruning importance class"),
    ("prune.importance={{_target_:torch_pruning.importance.GroupTaylorImportance}}", "ranks channels by gradients"),
    ("finetune=scratch finetune.init=fresh", "finetune.init='fresh' is invalid; allowed: pruned, scratch"),
    ("finetune=scratch finetune.budget=all", "finetune.budget='all' is invalid; allowed: finetune, total"),
    ("prune.round_to=0", "prune.round_to=0 is invalid; allowed: null, an integer >= 1, or auto"),
    ("prune.round_to=fast", "prune.round_to=fast is invalid; allowed: null, an integer >= 1, or auto"),
    ("prune.iterative_steps=0", "prune.iterative_steps=0 is invalid"),
    ("problem.mask.accelerations=[0]", "mask acceleration 0 is invalid; allowed: integers >= 1"),
    ("problem.mask.center_fractions=[1.2]", "mask center fraction 1.2 is invalid"),
    ("problem.mask.mask_type=spiral", "mask type 'spiral' is unknown; allowed:"),
    ("data.eval_mask.accelerations=[0]", "mask acceleration 0 is invalid; allowed: integers >= 1"),
    ("network=du_sr", "does not fit problem=csmri: it needs a closed-form proximal data step, which its physics"),
    (
        "problem=sr network=e2e_varnet",
        "network=e2e_varnet does not fit problem=sr: it needs multi-coil k-space measurements, which its physics "
        "(Downsampling) does not provide",
    ),
    ("problem=sr network=deq", "use network=deq_sr"),
    ("prune.depth=1.0", "prune.depth=1.0 is invalid; allowed: 0 <= depth < 1"),
    ("prune.depth=0.5 prune.depth_importance=bogus", "prune.depth_importance='bogus' is unknown; allowed: measured"),
    ("prune.depth=0.6", "prune.depth=0.6 would leave 0 of the 2 stages of E2EVarNet"),
    ("finetune.contractivity_weight=-1", "finetune.contractivity_weight=-1 is invalid; allowed: >= 0"),
    ("finetune.contractivity_weight=0.1", "needs a fixed-point network and E2EVarNet solves none"),
    ("finetune.max_epochs=-1", "finetune.max_epochs=-1 is invalid; allowed: integers >= 0"),
    ("pretrain.max_epochs=1.5", "pretrain.max_epochs=1.5 is invalid"),
    ("finetune.optimizer.lr=-1", "finetune.optimizer.lr=-1 is invalid; allowed: finite numbers > 0"),
    ("pretrain.optimizer.lr=nan", "pretrain.optimizer.lr=nan is invalid"),
    (
        "finetune=selfsup finetune.test_time.optimizer.lr=0",
        "finetune.test_time.optimizer.lr=0 is invalid; allowed: finite",
    ),
    ("finetune.frozen_priors=[decoder]", "finetune.frozen_priors=['decoder'] names no prior of this network (decoder)"),
    (
        "finetune=selfsup finetune.test_time.objective.ei_weight=-1",
        "with finetune.test_time merged on (test-time adaptation): finetune.objective.ei_weight=-1 is invalid",
    ),
    ("finetune=selfsup finetune.test_time.objective.norm=0", "finetune.objective.norm=0 is invalid; allowed: >= 1"),
    ("finetune.ema_decay=1.5", "finetune.ema_decay=1.5 is invalid; allowed: null (off) or a number in (0, 1)"),
    ("finetune.test_time.ema_decay=0", "finetune.test_time.ema_decay=0 is invalid; allowed: null (off) or"),
    ("data.batch_size=0", "data.batch_size=0 is invalid; allowed: integers >= 1"),
    ("data.num_workers=-1", "data.num_workers=-1 is invalid"),
    ("seed=abc", "seed='abc' is invalid; allowed: integers >= 0"),
    ("seed=-1", "seed=-1 is invalid"),
    ("network.model.num_cascades=0", "network.model.num_cascades=0 is invalid; allowed: integers >= 1"),
    ("network.model.chans=0", "network.model.chans=0 is invalid"),
    ("foo=1", "Could not override 'foo'"),
    ("network=bogus", "Could not find 'network/bogus'; allowed: custom, deq,"),
    ("finetune=bogus", "Could not find 'finetune/bogus'; allowed: distill,"),
    ("stage=bogus", "stage='bogus' is unknown; allowed: spade,"),
    ("eval_split=train", "eval_split='train' is invalid; allowed: val, test"),
    ("finetune.data=val", "finetune.data='val' is invalid; allowed: train, test"),
    ("benchmark.repeats=0", "benchmark.repeats=0 is invalid"),
    (
        "export.formats=[tflite]",
        "export.formats=['tflite'] names unknown format(s) ['tflite']; allowed: pt2, aoti, onnx, torchscript",
    ),
    (
        "benchmark.runtimes=[tensorrt]",
        "names unknown runtime(s) ['tensorrt']; allowed: eager, compile, aoti, onnxruntime, cuda_graph",
    ),
    ("benchmark.runtimes=[cuda_graph] benchmark.device=cpu", "benchmark.runtimes=[cuda_graph] needs a CUDA device"),
    ("trainer.devices=0", "trainer.devices=0 is invalid"),
    ("trainer.accelerator=tpu", "trainer.accelerator='tpu' is unknown"),
    ("prune.ratio=[", "no viable alternative at input '['"),
    ("hydra.run.dir=/proc/no/such", "output folder /proc/no/such cannot be created"),
]
DATA_CASES = [
    ("data=fastmri data.root=/does/not/exist", "data folder /does/not/exist does not exist"),
    ("data=fastmri data.root={data}/empty", "has no HDF5 (.h5) files"),
    ("data=fastmri data.root={data}/garbage", "is not a readable HDF5 file"),
    ("data=fastmri data.root={data}/no_kspace", "has no 'kspace' dataset"),
    ("data=fastmri data.root={data}/single_coil", "expected multi-coil (slices, coils, H, W)"),
    ("data=fastmri data.root={data}/coil_mismatch", "'sens_maps' has shape (2, 3, 32, 32) but 'kspace' (2, 4, 32"),
    ("data=fastmri data.root={data}/nan", "has NaN/inf values; allowed: finite k-space"),
    ("data=fastmri data.root={data}/extra_files", "holds other files ['notes.txt']"),
    ("data.builder.size=6", "are 6 x 6 pixels; scoring takes at least 7 x 7: the SSIM window is 7 x 7"),
    ("data.builder.size=32 network.model.pools=6", "network=e2e_varnet takes at least 64 x 64: its U-Nets halve"),
    ("problem=sr data.root={data}/empty", "has no image files"),
    ("problem=sr data.root={data}/tiny_images", "is 3x3, smaller than 16 pixels (data.patch_size)"),
    ("problem=sr data.root={data}/bad_images", "cannot be read"),
    ("problem=sr data.root={data}/float_images", "holds float32 values in [0, 3]; allowed: float images in [0, 1]"),
    (
        "stage=reconstruct ckpt_path={ckpt}/dense.ckpt data=fastmri data.root={data}/empty",
        "has no HDF5 (.h5) files to reconstruct",
    ),
    ("stage=reconstruct ckpt_path={ckpt}/dense.ckpt data=fastmri data.root={data}/nan", "has NaN/inf values"),
    ("stage=reconstruct ckpt_path={ckpt}/dense.ckpt data=fastmri data.root={data}/garbage", "not a readable HDF5"),
    ("stage=reconstruct problem=sr ckpt_path={ckpt}/dense.ckpt data.root={data}/empty", "has no images to reconstruct"),
    (
        "stage=reconstruct problem=sr ckpt_path={ckpt}/dense.ckpt data.root={data}/lr_images",
        "holds a spade_pl.models.E2EVarNet, not the configured",
    ),
]
CHECKPOINT_CASES = [
    ("stage=test ckpt_path=/no/such.ckpt", "checkpoint /no/such.ckpt does not exist"),
    ("stage=test ckpt_path={ckpt}/truncated.ckpt", "cannot be read safely"),
    ("stage=test ckpt_path={ckpt}/foreign.ckpt", "cannot be read safely"),
    ("stage=test network=varnet ckpt_path={ckpt}/dense.ckpt", "holds a spade_pl.models.E2EVarNet, not the configured"),
    ("stage=test ckpt_path={ckpt}/list.pt", "is not a checkpoint: it holds a list; allowed: a state_dict"),
    (
        "stage=test ckpt_path={ckpt}/whole_model.pt",
        "holds a pickled torch.nn.modules.linear.Linear, which weights_only",
    ),
    ("stage=test ckpt_path={ckpt}/other_architecture.pt", "has no tensor named like the configured network's"),
    ("stage=test ckpt_path={ckpt}/three_cascades.pt", "has num_cascades=3 (configured: num_cascades=2); add network"),
    ("stage=prune ckpt_path={ckpt}/three_cascades.pt", "add network.model.num_cascades=3"),
    ("stage=spade ckpt_path={ckpt}/three_cascades.pt", "add network.model.num_cascades=3"),
    ("stage=export ckpt_path={ckpt}/three_cascades.pt", "add network.model.num_cascades=3"),
    ("stage=test ckpt_path={ckpt}/dense.ckpt ckpt_prefix=model.", "ckpt_prefix=model. matches no tensor of checkpoint"),
    ("stage=prune ckpt_path={ckpt}/pruned.ckpt", "is already pruned; this stage needs the dense model"),
    ("resume_from={ckpt}/pruned.ckpt", "was not written by a spade-pl training stage"),
    ("resume_from=/no/such/run", "resume_from=/no/such/run does not exist"),
    ("stage=reconstruct", "stage=reconstruct needs ckpt_path=/path/to/model.ckpt"),
]
CASES = CONFIG_CASES + DATA_CASES + CHECKPOINT_CASES


def kspace(slices: int = 2, coils: int = 4, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.normal(size=(slices, coils, size, size)) + 1j * rng.normal(size=(slices, coils, size, size))) / 10


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory) -> Path:
    """Folders of bad data, three files each (a split needs three)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("bad_data")
    folders = {
        name: root / name
        for name in (
            "empty",
            "garbage",
            "no_kspace",
            "single_coil",
            "coil_mismatch",
            "nan",
            "extra_files",
            "tiny_images",
            "bad_images",
            "float_images",
            "lr_images",
        )
    }
    for folder in folders.values():
        folder.mkdir()
    for i in range(3):
        (folders["garbage"] / f"v{i}.h5").write_bytes(b"not an HDF5 file")
        with h5py.File(folders["no_kspace"] / f"v{i}.h5", "w") as hf:
            hf.create_dataset("reconstruction_rss", data=np.zeros((2, 32, 32), np.float32))
        with h5py.File(folders["single_coil"] / f"v{i}.h5", "w") as hf:
            hf.create_dataset("kspace", data=kspace()[:, 0].astype(np.complex64))
        write_multicoil_file(folders["extra_files"] / f"v{i}.h5", kspace())
        mismatch = kspace()
        write_multicoil_file(folders["coil_mismatch"] / f"v{i}.h5", mismatch)
        with h5py.File(folders["coil_mismatch"] / f"v{i}.h5", "a") as hf:
            hf.create_dataset("sens_maps", data=mismatch[:, :3].astype(np.complex64))
        poisoned = kspace()
        poisoned[:, :, 5, 5] = np.nan
        write_multicoil_file(folders["nan"] / f"v{i}.h5", poisoned)
        Image.fromarray(np.zeros((3, 3), np.uint8)).save(folders["tiny_images"] / f"im{i}.png")
        (folders["bad_images"] / f"im{i}.png").write_bytes(b"not a PNG")
        Image.fromarray(np.full((16, 16), 100, np.uint8)).save(folders["lr_images"] / f"im{i}.png")
        tifffile.imwrite(
            folders["float_images"] / f"im{i}.tif", np.linspace(0, 3, 32 * 32, dtype=np.float32).reshape(32, 32)
        )
    (folders["extra_files"] / "notes.txt").write_text("a stray file")
    return root


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory, cache_dir) -> Path:
    """A real dense and a real pruned tiny checkpoint, a truncated copy and a foreign file."""
    folder = tmp_path_factory.mktemp("bad_ckpt")
    dense = run(compose_tiny(folder / "dense", cache_dir, "stage=pretrain", "debug=fdr"))["checkpoint"]
    pruned = run(compose_tiny(folder / "pruned", cache_dir, "stage=prune", f"ckpt_path={dense}", "debug=fdr"))
    GlobalHydra.instance().clear()
    (folder / "dense.ckpt").write_bytes(Path(dense).read_bytes())
    (folder / "pruned.ckpt").write_bytes(Path(pruned["pruned_checkpoint"]).read_bytes())
    (folder / "truncated.ckpt").write_bytes(Path(dense).read_bytes()[:300])
    (folder / "foreign.ckpt").write_text("model weights, honestly")
    torch.save([1, 2, 3], folder / "list.pt")
    torch.save(torch.nn.Linear(2, 2), folder / "whole_model.pt")  # a pickled module: refused by the safe loader
    torch.save(EDSR(in_channels=2, feats=4, num_blocks=1).state_dict(), folder / "other_architecture.pt")
    torch.save(
        VarNet(num_cascades=3, sens_chans=2, sens_pools=2, chans=4, pools=2).state_dict(), folder / "three_cascades.pt"
    )
    return folder


def cli_in_process(args: list[str], monkeypatch, capfd) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["spade_pl", *args])
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as stopped:
        cli()
    GlobalHydra.instance().clear()
    return stopped.value.code, capfd.readouterr().err


@pytest.mark.parametrize(("override", "message"), CASES, ids=[case[0] for case in CASES])
def test_bad_input_stops_in_one_line_with_exit_2(
    override, message, bad_data, bad_checkpoints, cache_dir, tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("SPADE_PL_CACHE", str(cache_dir))
    monkeypatch.chdir(tmp_path)
    args = override.format(data=bad_data, ckpt=bad_checkpoints).split()
    tiny = TINY_FASTMRI if "data=fastmri" in override else tiny_overrides(tuple(args))
    run_dir = tmp_path / "run"
    dir_args = [] if override.startswith("hydra.run.dir") else [f"hydra.run.dir={run_dir}"]
    teachers = set((cache_dir / "teachers").glob("*/dense.ckpt"))
    code, err = cli_in_process([*tiny, *args, *dir_args], monkeypatch, capfd)
    lines = [line for line in err.splitlines() if line.strip() and "Warning" not in line]
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], err[-2000:]
    assert not [f for f in RESULT_FILES if any(run_dir.rglob(f))]  # nothing that looks finished
    assert not list(run_dir.rglob("*.ckpt")) and not (run_dir / "checkpoints").exists()  # no training began
    assert set((cache_dir / "teachers").glob("*/dense.ckpt")) == teachers  # nor did a teacher enter the cache


def test_the_docs_count_the_bad_inputs_this_suite_has():
    """The number the docs quote is this suite's, not one typed once and left behind."""
    text = "\n".join(p.read_text() for p in DOCS)
    for pattern, cases in (
        (r"runs \*\*(\d+) bad inputs\*\*", CASES),
        (r"\*\*(\d+) config values\*\*", CONFIG_CASES),
        (r"\*\*(\d+) data sets\*\*", DATA_CASES),
        (r"\*\*(\d+) checkpoints\*\*", CHECKPOINT_CASES),
    ):
        quoted = re.findall(pattern, text)
        assert quoted and all(int(n) == len(cases) for n in quoted), pattern


def test_an_error_starts_on_its_own_line_while_a_progress_bar_is_drawn(capfd):
    """Lightning's bars end their line only when they close; the error line must not be glued to one."""
    from tqdm import tqdm

    from spade_pl.core.errors import print_error

    print_error("first")
    bar = tqdm(total=10, desc="Epoch 0", file=sys.stderr)
    bar.update(3)
    print_error("non-finite training loss nan at step 3")
    bar.close()
    lines = capfd.readouterr().err.replace("\r", "\n").splitlines()
    assert "error: first" in lines and "error: non-finite training loss nan at step 3" in lines


def test_a_physics_whose_adjoint_is_wrong_stops_in_one_line_before_training(monkeypatch, capfd, cache_dir, tmp_path):
    """The preflight adjoint test runs on every job's first sample: a user's wrong ``A_adjoint`` is one line, not a
    network trained on a wrong gradient."""
    from spade_pl.physics.mri import MultiCoilMRI

    adjoint = MultiCoilMRI.A_adjoint
    monkeypatch.setattr(MultiCoilMRI, "A_adjoint", lambda self, k: 1.5 * adjoint(self, k))
    monkeypatch.setenv("SPADE_PL_CACHE", str(cache_dir))
    monkeypatch.chdir(tmp_path)
    code, err = cli_in_process([*tiny_overrides(()), f"hydra.run.dir={tmp_path / 'run'}"], monkeypatch, capfd)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err[-2000:]
    assert re.match(r"error: problem=csmri's physics \(MultiCoilMRI\) fails the adjoint test: <A x, v> = ", errors[0])
    assert not (tmp_path / "run" / "checkpoints").exists()
