"""The numbers every table rests on, pinned to references computed here by hand (or by fastmri.evaluate directly),
never by the code under test: which channels SPADE keeps, the MACs of the MAC bound, PSNR/SSIM per convention."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fastmri import evaluate
from torch import Tensor, nn

from spade_pl.benchmark.macs import count_forward_macs, forward_mac_parts
from spade_pl.models.base import MBDLNetwork
from spade_pl.pruning.prune import prune_network
from spade_pl.pruning.settings import PruneSettings
from spade_pl.reporting.metrics import volume_metrics
from spade_pl.training.lightning_module import ReconModule

# ---- which channels each group keeps ---------------------------------------------------------------------------
WIDTHS = (2, 6, 6, 2)  # a chain of 1x1 convolutions: in 2 -> hidden 6 -> hidden 6 -> out 2 (fixed by the physics)


class ChainPrior(MBDLNetwork):
    """A network whose one prior is a chain of 1x1 convolutions: two dependency groups (the two hidden widths),
    each coupling one layer's out-filters with the next layer's in-slices. The biases tag the channels (hidden
    layer ``i``'s channel ``k`` has bias ``1000 i + k``): they survive pruning, so they say which channels were
    kept, and they are large, so counting them in the importance (which SPADE must not) would change the choice."""

    def __init__(self, weights: list[np.ndarray]):
        super().__init__()
        layers = []
        for i, w in enumerate(weights):
            conv = nn.Conv2d(w.shape[1], w.shape[0], 1)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(w)[..., None, None])
                conv.bias.copy_(torch.arange(w.shape[0]) + 1000.0 * (i + 1))
            layers += [conv, nn.ReLU()]
        self.prior = nn.Sequential(*layers[:-1])

    def forward(self, y: Tensor, physics=None) -> Tensor:
        return self.prior(y)

    def priors(self) -> dict[str, nn.Module]:
        return {"chain": self.prior}

    def prior_output_layers(self) -> dict[str, list[nn.Module]]:
        return {"chain": [self.prior[-1]]}


def chain_weights(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    scales = (1.0, 0.3, 1.0)  # the second hidden group's filters are smaller: global pruning takes more of it
    return [
        (rng.standard_normal((o, i)) * s).astype(np.float32)
        for (i, o), s in zip(zip(WIDTHS, WIDTHS[1:], strict=False), scales, strict=True)
    ]


def group_l1(weights: list[np.ndarray], group: int) -> np.ndarray:
    """SPADE's importance of hidden width ``group``: per channel, the L1 norm of its out-filter in the layer before
    plus the L1 norm of its in-slice in the layer after; no bias."""
    return np.abs(weights[group]).sum(1) + np.abs(weights[group + 1]).sum(0)


def keep(weights: list[np.ndarray], kept: list[np.ndarray], group: int, channels: np.ndarray) -> None:
    """Remove all but ``channels`` (positions in the current weights) of hidden width ``group``, in place."""
    weights[group], weights[group + 1] = weights[group][channels], weights[group + 1][:, channels]
    kept[group] = kept[group][channels]


def reference_kept(weights: list[np.ndarray], ratio: float, global_pruning: bool, steps: int) -> list[list[int]]:
    """The original indices of the channels each hidden group keeps, by hand: at step ``t`` of ``steps`` every
    group is scored on the weights the earlier steps left and cut to ``floor(C (1 - ratio t / steps))`` channels
    (local: the group's lowest; global: the lowest over both groups together, to the same total)."""
    weights = [w.copy() for w in weights]
    kept = [np.arange(w.shape[0]) for w in weights[:-1]]
    initial = [w.shape[0] for w in weights[:-1]]
    for step in range(1, steps + 1):
        target = ratio * step / steps
        scores = [group_l1(weights, g) for g in range(len(kept))]
        if global_pruning:
            removed = sum(len(s) for s in scores) - int(sum(initial) * (1 - target))
            threshold = np.sort(np.concatenate(scores))[removed - 1] if removed > 0 else -np.inf
            choices = [np.flatnonzero(s > threshold) for s in scores]
        else:
            choices = [np.sort(np.argsort(-s)[: int(c * (1 - target))]) for s, c in zip(scores, initial, strict=True)]
        for g, channels in enumerate(choices):
            keep(weights, kept, g, channels)
    return [sorted(int(k) for k in group) for group in kept]


def pruned_kept(weights: list[np.ndarray], **settings) -> list[list[int]]:
    network = ChainPrior(weights)
    prune_network(network, torch.randn(1, 2, 4, 4), None, PruneSettings(**settings))
    convs = [m for m in network.prior if isinstance(m, nn.Conv2d)]
    return [sorted(int(b) - 1000 * (i + 1) for b in conv.bias.detach()) for i, conv in enumerate(convs[:-1])]


SEED = 4  # weights where local, global and iterative pruning keep three different sets


@pytest.mark.parametrize(
    "settings",
    [
        {"ratio": 0.5},
        {"ratio": 0.5, "global_pruning": True},
        {"ratio": 0.5, "iterative_steps": 3},
        {"ratio": 0.34},
    ],
    ids=["local", "global", "iterative", "local-0.34"],
)
def test_spade_keeps_the_channels_of_highest_group_l1_norm(settings):
    weights = chain_weights(SEED)
    expected = reference_kept(
        weights, settings["ratio"], settings.get("global_pruning", False), settings.get("iterative_steps", 1)
    )
    assert pruned_kept(weights, **settings) == expected


def test_the_three_schedules_differ_on_these_weights_and_random_importance_keeps_another_set():
    weights = chain_weights(SEED)
    local, global_, iterative = (
        reference_kept(weights, 0.5, False, 1),
        reference_kept(weights, 0.5, True, 1),
        reference_kept(weights, 0.5, False, 3),
    )
    assert len({str(local), str(global_), str(iterative)}) == 3  # so each test above pins its own rule
    assert [len(g) for g in local] == [3, 3] and sum(len(g) for g in global_) == 6
    torch.manual_seed(0)
    assert pruned_kept(weights, ratio=0.5, importance="random") != local  # the negative control


# ---- MACs and the MAC bound --------------------------------------------------------------------------------------
class ConvTransposeFFT(MBDLNetwork):
    """``y`` (B, C, H, W, 2) -> ifft2 -> a 3x3 conv (C·2 -> F) -> a stride-2 transposed conv (F -> 2) -> fft2 of the
    (2H, 2W) result, whose MACs are counted here by hand."""

    def __init__(self, coils: int, features: int):
        super().__init__()
        up = nn.ConvTranspose2d(features, 2, 2, stride=2)
        self.prior = nn.Sequential(nn.Conv2d(2 * coils, features, 3, padding=1), nn.ReLU(), up)

    def forward(self, y: Tensor, physics=None) -> Tensor:
        image = torch.view_as_real(torch.fft.ifft2(torch.view_as_complex(y.contiguous()), norm="ortho"))
        planes = image.movedim(-1, 2).flatten(1, 2)
        out = self.prior(planes)
        spectrum = torch.fft.fft2(torch.complex(out[:, 0], out[:, 1]), norm="ortho")
        return torch.view_as_real(spectrum)

    def priors(self) -> dict[str, nn.Module]:
        return {"prior": self.prior}

    def prior_output_layers(self) -> dict[str, list[nn.Module]]:
        return {"prior": [self.prior[2]]}


def hand_macs(coils: int, features: int, size: int) -> int:
    """Per slice: conv ``F·2C·9`` MACs at each of ``size²`` outputs + ``F`` bias adds each; the ReLU one op per
    element (torch-pruning's convention for activations and norms); transposed conv ``2·F·4`` at each of ``size²``
    *inputs* + 2 bias adds at each of ``(2 size)²`` outputs; an FFT of ``N`` points is ``5 N log2 N`` flops =
    ``2.5 N log2 N`` MACs, ``C`` transforms of ``size²`` and one of ``(2 size)²``."""
    n, m = size * size, 4 * size * size
    conv = features * 2 * coils * 9 * n + features * n + features * n
    transposed = 2 * features * 4 * n + 2 * m
    ffts = coils * 2.5 * n * math.log2(n) + 2.5 * m * math.log2(m)
    return int(conv + transposed + ffts)


def test_whole_forward_macs_are_the_hand_computed_ones_and_so_is_the_bound():
    y = torch.randn(1, 3, 8, 8, 2)
    dense = ConvTransposeFFT(coils=3, features=8)
    assert count_forward_macs(dense, y, None) == hand_macs(3, 8, 8)
    pruned = ConvTransposeFFT(coils=3, features=8)
    prune_network(pruned, y, None, PruneSettings(ratio=0.5))
    assert pruned.prior[0].out_channels == 4
    bound = count_forward_macs(dense, y, None) / count_forward_macs(pruned, y, None)
    assert bound == pytest.approx(hand_macs(3, 8, 8) / hand_macs(3, 4, 8))


def test_the_forward_macs_split_into_the_prior_times_its_calls_the_ffts_and_nothing_else():
    y = torch.randn(2, 3, 8, 8, 2)
    parts = forward_mac_parts(ConvTransposeFFT(coils=3, features=8), y, None)
    n, m = 64, 256
    ffts = int(2 * (3 * 2.5 * n * math.log2(n) + 2.5 * m * math.log2(m)))
    assert parts["prior_calls"] == {"prior": 1} and parts["ffts"] == ffts
    assert parts["priors"]["prior"] == 2 * hand_macs(3, 8, 8) - ffts and parts["other_layers"] == 0
    assert parts["total"] == 2 * hand_macs(3, 8, 8)


# ---- PSNR / SSIM per convention ----------------------------------------------------------------------------------
def test_fastmri_convention_uses_the_volume_maximum_and_fastmris_ssim():
    """Two slices with maxima 1 and 4: PSNR has the *volume's* data range 4 (a per-slice range would differ)."""
    gt = np.stack([np.full((16, 16), 1.0), np.full((16, 16), 4.0)]).astype(np.float32)
    gt[:, 4:12, 4:12] *= 0.5
    prediction = gt + 0.1
    metrics = volume_metrics(prediction, gt, "fastmri")
    assert metrics["psnr"] == pytest.approx(10 * math.log10(4.0**2 / 0.1**2), abs=1e-4)
    assert metrics["ssim"] == pytest.approx(evaluate.ssim(gt, prediction).item(), abs=1e-9)


def test_fastmri_ssim_of_constant_images_is_the_luminance_term():
    """With no variance SSIM is ``(2ab + C1) / (a² + b² + C1)``, ``C1 = (0.01 L)²``, ``L`` = the volume maximum."""
    a, b = 2.0, 1.5
    metrics = volume_metrics(np.full((1, 12, 12), b, np.float32), np.full((1, 12, 12), a, np.float32), "fastmri")
    c1 = (0.01 * a) ** 2
    assert metrics["ssim"] == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-6)


def test_minmax_convention_crops_a_square_normalises_each_image_and_uses_max_1():
    ramp = np.tile(np.linspace(0, 1, 12, dtype=np.float32), (8, 1))[None]  # 8 x 12: the crop keeps columns 2..9
    prediction = ramp**2
    crop = slice(2, 10)
    gt_c, pred_c = ramp[0][:, crop], prediction[0][:, crop]
    gt_n = (gt_c - gt_c.min()) / (gt_c.max() - gt_c.min())
    pred_n = (pred_c - pred_c.min()) / (pred_c.max() - pred_c.min())
    expected = 10 * math.log10(1 / np.mean((pred_n - gt_n) ** 2))
    metrics = volume_metrics(prediction, ramp, "minmax")
    assert metrics["psnr"] == pytest.approx(expected, abs=1e-4)
    assert metrics["ssim"] < 0.999
    # min-max normalisation: an affine change of the prediction changes nothing
    assert volume_metrics(ramp * 7 + 2, ramp, "minmax")["ssim"] == pytest.approx(1.0, abs=1e-6)


def test_the_report_averages_volumes_not_slices(tmp_path):
    """A 1-slice volume counts as much as a 3-slice one: the mean is over per-volume values."""
    module = ReconModule(ChainPrior(chain_weights(0)), objective=None, optimizer=None)
    rng = np.random.default_rng(0)
    volumes = {"a.h5": 3, "b.h5": 1}
    module.on_test_epoch_start()
    expected = []
    for name, slices in volumes.items():
        preds, gts = [], []
        for s in range(slices):
            gt = rng.random((8, 8)).astype(np.float32) + 0.5
            prediction = gt + rng.normal(0, 0.05 * (1 + s), (8, 8)).astype(np.float32)
            module._scores.add(name, s, prediction, gt * 0.5, gt)
            preds.append(prediction)
            gts.append(gt)
        expected.append(float(evaluate.psnr(np.stack(gts), np.stack(preds))))
    module.log_dict = lambda *args, **kwargs: None  # no trainer attached
    module.on_test_epoch_end()
    assert module.test_results["mean"]["psnr"] == pytest.approx(np.mean(expected), abs=1e-9)
    assert [v["slices"] for v in module.test_results["per_volume"]] == [3, 1]
