"""Super-resolution through the same spine: physics, data, metrics, networks, pruning and the whole job."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spade_pl.core.errors import SpadeInputError
from spade_pl.data.images.datamodule import EmbeddedImagesBuilder, SRDataset, read_image
from spade_pl.job.pipeline import run
from spade_pl.models import DEQ, UnrolledHQS
from spade_pl.physics.base import DataTerm
from spade_pl.physics.sr import Downsampling, bicubic_kernel, gaussian_kernel, make_kernel
from spade_pl.pruning.prune import prune_network, replay_structure
from spade_pl.pruning.settings import PruneSettings
from spade_pl.reporting.metrics import luminance, volume_metrics

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("kind", ["gaussian", "bicubic"])
def test_downsampling_adjoint_and_closed_form_data_step(scale, kind):
    torch.manual_seed(0)
    physics = Downsampling(kernel=make_kernel(kind, scale).double(), scale=scale)
    x = torch.randn(2, 3, 8 * scale, 6 * scale, dtype=torch.float64)
    y = torch.randn_like(physics.A(x))
    assert (physics.A(x) * y).sum().item() == pytest.approx((x * physics.A_adjoint(y)).sum().item(), abs=1e-10)
    z, alpha = torch.randn_like(x), torch.tensor([0.3, 2.0], dtype=torch.float64)
    closed = physics.data_term(y).prox(z, alpha)
    conjugate_gradients = DataTerm(physics, y).prox(z, alpha, iterations=100)
    assert (closed - conjugate_gradients).abs().max() < 1e-8


def test_kernels():
    for kernel in (gaussian_kernel(1.0), bicubic_kernel(2), bicubic_kernel(4)):
        assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
        assert torch.allclose(kernel, kernel.flip(0)) and torch.allclose(kernel, kernel.T)
    assert gaussian_kernel(1.0).shape == (7, 7) and bicubic_kernel(3).shape == (12, 12)
    with pytest.raises(SpadeInputError, match="super-resolution scale 5 is invalid; allowed: \\(2, 3, 4\\)"):
        Downsampling(kernel=gaussian_kernel(1.0), scale=5)
    with pytest.raises(SpadeInputError, match="blur kernel 'box' is unknown"):
        make_kernel("box", 2)


def test_masked_data_step_falls_back_to_conjugate_gradients():
    physics = Downsampling(kernel=gaussian_kernel(1.0).double(), scale=2, mask=torch.ones(1, 1, 8, 8, dtype=torch.bool))
    x = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    kept, held = physics.split(0.5, torch.Generator().manual_seed(0))
    assert not (kept.mask & held.mask).any() and (kept.mask | held.mask).all()
    y = kept.A(x)
    solution = kept.data_term(y).prox(torch.zeros_like(x), 0.1)
    residual = kept.A_adjoint(kept.A(solution)) + 0.1 * solution - kept.A_adjoint(y)
    assert residual.abs().max() < 1e-6


@pytest.fixture(scope="module")
def embedded_images(tmp_path_factory) -> Path:
    return EmbeddedImagesBuilder(tmp_path_factory.mktemp("images"))()


def test_embedded_images_are_split_by_image(embedded_images):
    names = {
        split: sorted(p.stem for p in (embedded_images / split).glob("*.png")) for split in ("train", "val", "test")
    }
    assert names["test"] == ["camera", "coffee", "moon"] and len(names["train"]) == 11
    assert not set(names["train"]) & set(names["val"]) and not set(names["val"]) & set(names["test"])


def test_dataset_patches_whole_images_and_fixed_noise(embedded_images):
    files = sorted((embedded_images / "test").glob("*.png"))
    kernel = gaussian_kernel(1.0)
    train = SRDataset(files, kernel, 2, 0.01, 3, patch_size=17, patches_per_image=2)
    sample = train[0]
    assert len(train) == 6 and sample.target.shape == (3, 16, 16) and sample.lr.shape == (3, 8, 8)
    evaluation = SRDataset(files, kernel, 3, 0.01, 1, patch_size=None, eval_size=50)
    first, again = evaluation[0], evaluation[0]
    assert first.target.shape == (1, 48, 48) and torch.equal(first.lr, again.lr)  # seeded noise per image
    clean = Downsampling(kernel=kernel, scale=3).A(first.target[None])[0]
    assert 0.005 < (first.lr - clean).std() < 0.015


def test_bad_images_are_one_line_errors(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(SpadeInputError, match=r"image .*broken.png cannot be read"):
        read_image(tmp_path / "broken.png", 1)
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(SpadeInputError, match=r"small.png is 10x12, smaller than 16 pixels \(data.patch_size\)"):
        SRDataset([tmp_path / "small.png"], gaussian_kernel(1.0), 2, 0.0, 1, patch_size=16)
    Image.fromarray(np.zeros((8, 8, 4), dtype=np.uint8)).save(tmp_path / "rgba.png")  # alpha is dropped
    assert read_image(tmp_path / "rgba.png", 3).shape == (3, 8, 8)


def test_sr_metrics_use_luminance_and_crop_the_border():
    rng = np.random.default_rng(0)
    target = rng.uniform(0.2, 0.8, size=(1, 3, 24, 24)).astype(np.float32)
    noisy = target + rng.normal(0, 0.01, size=target.shape).astype(np.float32)
    noisy[..., :2, :] = 0  # an error only inside the border: cropped away
    scores = volume_metrics(noisy, target, "sr_y", border=2)
    assert 40 < scores["psnr"] < 48 and scores["ssim"] > 0.9
    assert volume_metrics(noisy, target, "sr_y", border=0)["psnr"] < scores["psnr"] - 5
    grey = torch.full((1, 3, 2, 2), 0.5)
    assert luminance(grey).flatten()[0].item() == pytest.approx((16 + 0.5 * 219) / 255, abs=1e-4)


def test_unrolled_network_prunes_replays_and_keeps_its_interface():
    torch.manual_seed(0)
    network = UnrolledHQS(iterations=2, channels=1, widths=(8, 16), blocks=1).eval()
    physics = Downsampling(kernel=gaussian_kernel(1.0), scale=2)
    y = physics.A(torch.rand(1, 1, 32, 32))
    dense_out = network(y, physics)
    pruned = copy.deepcopy(network)
    result = prune_network(pruned, y, physics, PruneSettings(ratio=0.5))
    assert result.reports["iter0"].widths_after == [4, 8] and pruned(y, physics).shape == dense_out.shape
    rebuilt = replay_structure(copy.deepcopy(network), result.structure)
    rebuilt.load_state_dict(pruned.state_dict())
    assert torch.allclose(rebuilt(y, physics), pruned(y, physics), atol=1e-6)


def test_paper_size_parameter_counts():
    # per ResUNet(32/64/128/256, 1 block): head 320 + residual blocks 2 x 387,520 (18,496 + 73,856 + 295,168)
    # + body 1,180,160 + strided convs 172,480 + transposed convs 172,256 + tail 289 = 2,300,545
    du = UnrolledHQS(iterations=8, channels=1, widths=(32, 64, 128, 256), blocks=1)
    assert sum(p.numel() for p in du.parameters()) == 8 * 2_300_545 + 8  # + one alpha per iteration
    # the paper's EDSR (999,426 for 2 channels) with 1 channel in and out: head 640, tail 577; + gamma, alpha
    deq = DEQ(feats=64, num_blocks=13, channels=1)
    assert sum(p.numel() for p in deq.parameters()) == 999_426 - 1_216 - 1_154 + 640 + 577 + 2


@pytest.mark.parametrize("strategy", ["distill", "selfsup"])
def test_whole_sr_job_tiny(make_cfg, tmp_path, strategy):
    results = run(
        make_cfg("problem=sr", f"finetune={strategy}", "debug=limit", "benchmark.repeats=1", "benchmark.warmup=0")
    )
    assert list(results["models"]) == ["bicubic", "dense", "pruned (one-shot)", f"pruned + {strategy}"]
    assert (
        results["convention"] == "sr_y"
        and results["benchmark"]["pruned"]["params"] < results["benchmark"]["dense"]["params"]
    )
    assert (tmp_path / "run" / "results.png").stat().st_size > 10_000


def test_sr_deq_runs_the_job(make_cfg):
    results = run(
        make_cfg(
            "problem=sr", "network=deq_sr", "finetune=none", "debug=limit", "benchmark.repeats=1", "benchmark.warmup=0"
        )
    )
    assert results["benchmark"]["dense"]["solver_iterations"]["min"] >= 1


def test_your_own_network_is_pruned_fine_tuned_and_benchmarked(make_cfg, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    cfg = make_cfg(
        "problem=sr",
        "network=custom",
        "network.model={_target_: custom_network.UnrolledDnCNN, channels: 1, iterations: 2, features: 8, depth: 3}",
        "finetune=distill",
        "debug=limit",
        "benchmark.repeats=1",
        "benchmark.warmup=0",
    )
    results = run(cfg)
    assert results["pruning"]["dncnn0"]["widths_before"] == [8] and results["pruning"]["dncnn0"]["widths_after"] == [4]
    assert "pruned + distill" in results["models"] and results["benchmark"]["mac_bound_forward"] > 1
    sys.modules.pop("custom_network", None)


def test_given_low_resolution_images_are_paired_by_name(tmp_path):
    from spade_pl.data.images.datamodule import ImageDataModule

    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        (tmp_path / "hr" / split).mkdir(parents=True)
        (tmp_path / "lr" / split).mkdir(parents=True)
        for i in range(2):
            hr = rng.integers(0, 255, size=(40, 36), dtype=np.uint8)
            Image.fromarray(hr).save(tmp_path / "hr" / split / f"{split}{i}.png")
            Image.fromarray(hr[::2, ::2]).save(tmp_path / "lr" / split / f"{split}{i}x2.png")
    dm = ImageDataModule(str(tmp_path / "hr"), scale=2, patch_size=16, lr_root=str(tmp_path / "lr"), lr_suffix="x2")
    patch = dm._dataset("train", "train")[0]
    assert patch.target.shape == (1, 16, 16) and patch.lr.shape == (1, 8, 8)
    # flips and quarter turns move the ::2 grid, but the LR patch is still a window of the LR file
    lr_values = set(np.asarray(Image.open(tmp_path / "lr" / "train" / f"{patch.fname}".replace(".png", "x2.png"))).flat)
    assert {round(float(v) * 255) for v in patch.lr.flatten()} <= lr_values
    whole = dm._dataset("test", "eval")[0]
    assert whole.lr.shape == (1, 20, 18) and torch.equal(whole.lr, whole.target[:, ::2, ::2])
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(tmp_path / "lr" / "test" / "test0x2.png")
    with pytest.raises(
        SpadeInputError, match=r"test0x2.png is 5x5; with test0.png \(40x36\) at scale 2 it must be 20x18"
    ):
        ImageDataModule(str(tmp_path / "hr"), scale=2, lr_root=str(tmp_path / "lr"), lr_suffix="x2")._dataset("test")


def test_training_pairs_are_what_the_physics_measures(make_cfg):
    """Augmenting a measured pair would move the decimation grid: every training LR patch must equal A(HR)."""
    from spade_pl.job.pipeline import prepare

    dataset = prepare(make_cfg("problem=sr", "problem.noise_std=0", "debug=fdr")).datamodule._dataset("train", "train")
    torch.manual_seed(0)
    for index in range(8):  # random crops, flips and quarter turns
        sample = dataset[index]
        measured = sample.physics().A(sample.target[None])[0]
        assert torch.allclose(measured, sample.lr, atol=1e-6)
