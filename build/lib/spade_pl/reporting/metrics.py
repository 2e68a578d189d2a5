"""PSNR/SSIM on magnitude images under the two conventions that MRI papers use.

- ``fastmri`` (default): per volume, data range = the ground-truth volume's maximum, SSIM with a 7x7
  uniform window (``fastmri.evaluate``, i.e. what the fastMRI leaderboard reports).
- ``minmax`` (SPADE reference): per image, centre-crop to a square, min-max normalise prediction and
  ground truth to [0, 1] independently, PSNR with max 1, SSIM with an 11x11 Gaussian window (σ 1.5).
- ``sr_y`` (super-resolution): per image, clamp to [0, 1], the luminance (Y of ITU-R BT.601, as MATLAB's
  ``rgb2ycbcr``) of RGB images, ``border`` pixels (the scale) cropped from every side, PSNR with max 1, SSIM
  with an 11x11 Gaussian window (σ 1.5); ``sr_rgb``: the same on every colour channel.

Images are ``(slices, h, w)`` (MRI magnitudes) or ``(slices, C, h, w)`` (colour channels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from fastmri import evaluate
from fastmri.data.transforms import center_crop
from fastmri.losses import SSIMLoss
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from spade_pl.core.errors import require

_ssim_loss = SSIMLoss()
#: the SSIM window of training losses and progress logging (fastMRI's SSIM)
TRAINING_SSIM_WINDOW = 7


def planes(images: Tensor) -> Tensor:
    """``(B, h, w)`` or ``(B, C, h, w)`` -> ``(B·C, 1, h, w)``: one grey plane per channel (for fastMRI's SSIM)."""
    return images.reshape(-1, 1, *images.shape[-2:])


def slice_metrics(prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Fast per-slice PSNR/SSIM for progress logging (data range = each target's max)."""
    data_range = target.flatten(1).amax(dim=1)
    psnr = torch.stack(
        [
            peak_signal_noise_ratio(p, t, data_range=float(r))
            for p, t, r in zip(prediction, target, data_range, strict=True)
        ]
    )
    per_plane = data_range.repeat_interleave(planes(target).shape[0] // target.shape[0])
    ssim = 1 - _ssim_loss.to(prediction.device)(planes(prediction), planes(target), per_plane)
    return {"psnr": psnr.mean(), "ssim": ssim}


def _minmax(x: Tensor) -> Tensor:
    lo, hi = x.flatten(1).amin(1)[:, None, None], x.flatten(1).amax(1)[:, None, None]
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def luminance(rgb: Tensor) -> Tensor:
    """``(N, 3, h, w)`` RGB in [0, 1] -> ``(N, 1, h, w)`` Y of ITU-R BT.601 in [16/255, 235/255]."""
    weights = torch.tensor([65.481, 128.553, 24.966], dtype=rgb.dtype).reshape(1, 3, 1, 1) / 255.0
    return (rgb * weights).sum(1, keepdim=True) + 16.0 / 255.0


def _sr_metrics(prediction: np.ndarray, target: np.ndarray, border: int, on_luminance: bool) -> dict[str, float]:
    pred, gt = (torch.from_numpy(a).double().clamp(0, 1) for a in (prediction, target))
    if pred.dim() == 3:
        pred, gt = pred[:, None], gt[:, None]
    if on_luminance and pred.shape[1] == 3:
        pred, gt = luminance(pred), luminance(gt)
    if border:
        pred, gt = pred[..., border:-border, border:-border], gt[..., border:-border, border:-border]
    psnr = peak_signal_noise_ratio(pred, gt, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(
        planes(pred), planes(gt), data_range=1.0, kernel_size=11, sigma=1.5, reduction="none"
    )
    return {"psnr": float(psnr.mean()), "ssim": float(ssim.mean())}


def _fastmri_metrics(prediction: np.ndarray, target: np.ndarray, _border: int) -> dict[str, float]:
    return {"psnr": float(evaluate.psnr(target, prediction)), "ssim": float(evaluate.ssim(target, prediction).item())}


def _minmax_metrics(prediction: np.ndarray, target: np.ndarray, _border: int) -> dict[str, float]:
    side = min(target.shape[-2:])
    pred = _minmax(center_crop(torch.from_numpy(prediction), (side, side)).double())
    gt = _minmax(center_crop(torch.from_numpy(target), (side, side)).double())
    psnr = peak_signal_noise_ratio(pred, gt, data_range=1.0, reduction="none", dim=(1, 2))
    ssim = structural_similarity_index_measure(
        pred.unsqueeze(1), gt.unsqueeze(1), data_range=1.0, kernel_size=11, sigma=1.5, reduction="none"
    )
    return {"psnr": float(psnr.mean()), "ssim": float(ssim.mean())}


@dataclass(frozen=True)
class Convention:
    """How one convention scores a volume (``score(prediction, target, border)``) and the SSIM window it uses
    (the smallest image side it can score, with ``border`` cropped from each side)."""

    score: Callable[[np.ndarray, np.ndarray, int], dict[str, float]]
    ssim_window: int


#: ``problem.metric_convention`` -> how it scores (the module docstring says what each does)
CONVENTIONS: dict[str, Convention] = {
    "fastmri": Convention(_fastmri_metrics, 7),
    "minmax": Convention(_minmax_metrics, 11),
    "sr_y": Convention(partial(_sr_metrics, on_luminance=True), 11),
    "sr_rgb": Convention(partial(_sr_metrics, on_luminance=False), 11),
}


def metric_convention(name: str) -> Convention:
    require(name in CONVENTIONS, f"metric convention {name!r} is unknown; allowed: {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name]


def volume_metrics(
    prediction: np.ndarray, target: np.ndarray, convention: str = "fastmri", border: int = 0
) -> dict[str, float]:
    """PSNR and SSIM of one volume (its slices stacked) under ``convention``; ``border``: pixels cropped from
    every side (super-resolution)."""
    return metric_convention(convention).score(prediction, target, border)


def min_scored_size(convention: str, border: int = 0) -> tuple[int, str]:
    """The smallest ground-truth side the metrics and the training losses can score, and why in words."""
    window = max(metric_convention(convention).ssim_window, TRAINING_SSIM_WINDOW)
    crop = f" after the {border}-pixel border" if border else ""
    return window + 2 * border, f"the SSIM window is {window} x {window}{crop} (problem.metric_convention={convention})"
