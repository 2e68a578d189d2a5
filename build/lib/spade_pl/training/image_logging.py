"""Image panels (zero-filled | reconstruction | ground truth | error) for whichever logger is attached."""

from __future__ import annotations

import numpy as np
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from torch import Tensor


def panel(*images: Tensor) -> np.ndarray:
    """Side-by-side images scaled together to [0, 1], the last one (error) x5 for visibility.

    ``(h, w)`` magnitudes or ``(C, h, w)`` colour images; returns ``(h, W)`` grey or ``(h, W, 3)`` RGB.
    """
    scale = max(float(images[0].max()), 1e-12)
    tiles = [img.detach().float().cpu() / scale for img in images]
    tiles[-1] = (tiles[-1] * 5).clamp(0, 1) if len(tiles) == 4 else tiles[-1]
    joined = torch.cat([t.clamp(0, 1) for t in tiles], dim=-1)
    if joined.dim() == 3:
        joined = joined[0] if joined.shape[0] == 1 else joined.permute(1, 2, 0)
    return joined.numpy()


def log_panel(loggers: list[Logger], key: str, image: np.ndarray, step: int) -> None:
    """Send a grey-scale ``(h, w)`` panel to every logger that can show images (CSV cannot)."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, global_step=step, dataformats="HW" if image.ndim == 2 else "HWC")
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], step=step)
