"""PSNR/SSIM on magnitude images under the two conventions that MRI papers use.

- ``fastmri`` (default): per volume, data range = the ground-truth volume's maximum, SSIM with a 7x7
  uniform window (``fastmri.evaluate``, i.e. what the fastMRI leaderboard reports).
- ``minmax`` (SPADE reference): per image, centre-crop to a square, min-max normalise prediction and
  ground truth to [0, 1] independently, PSNR with max 1, SSIM with an 11x11 Gaussian window (σ 1.5).
"""

from __future__ import annotations

import numpy as np
import torch
from fastmri import evaluate
from fastmri.data.transforms import center_crop
from fastmri.losses import SSIMLoss
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from spade_pl.errors import require

CONVENTIONS = ("fastmri", "minmax")
_ssim_loss = SSIMLoss()


def slice_metrics(prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Fast per-slice PSNR/SSIM ``(B, h, w)`` for progress logging (data range = each target's max)."""
    data_range = target.flatten(1).amax(dim=1)
    psnr = torch.stack(
        [
            peak_signal_noise_ratio(p, t, data_range=float(r))
            for p, t, r in zip(prediction, target, data_range, strict=True)
        ]
    )
    ssim = 1 - _ssim_loss.to(prediction.device)(prediction.unsqueeze(1), target.unsqueeze(1), data_range)
    return {"psnr": psnr.mean(), "ssim": ssim}


def _minmax(x: Tensor) -> Tensor:
    lo, hi = x.flatten(1).amin(1)[:, None, None], x.flatten(1).amax(1)[:, None, None]
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def volume_metrics(prediction: np.ndarray, target: np.ndarray, convention: str = "fastmri") -> dict[str, float]:
    """PSNR and SSIM of one volume ``(slices, h, w)`` under ``convention``."""
    require(convention in CONVENTIONS, f"metric convention {convention!r} is unknown; allowed: {CONVENTIONS}")
    if convention == "fastmri":
        return {
            "psnr": float(evaluate.psnr(target, prediction)),
            "ssim": float(evaluate.ssim(target, prediction).item()),
        }
    side = min(target.shape[-2:])
    pred = _minmax(center_crop(torch.from_numpy(prediction), (side, side)).double())
    gt = _minmax(center_crop(torch.from_numpy(target), (side, side)).double())
    psnr = peak_signal_noise_ratio(pred, gt, data_range=1.0, reduction="none", dim=(1, 2))
    ssim = structural_similarity_index_measure(
        pred.unsqueeze(1), gt.unsqueeze(1), data_range=1.0, kernel_size=11, sigma=1.5, reduction="none"
    )
    return {"psnr": float(psnr.mean()), "ssim": float(ssim.mean())}
