"""Image panels (zero-filled | reconstruction | ground truth | error) for whichever logger is attached."""

from __future__ import annotations

import numpy as np
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from torch import Tensor


def panel(*images: Tensor) -> np.ndarray:
    """Side-by-side magnitude images ``(h, w)`` scaled together to [0, 1]; the last one (error) x5 for visibility."""
    scale = max(float(images[0].max()), 1e-12)
    tiles = [img.detach().float().cpu() / scale for img in images]
    tiles[-1] = (tiles[-1] * 5).clamp(0, 1) if len(tiles) == 4 else tiles[-1]
    return torch.cat([t.clamp(0, 1) for t in tiles], dim=-1).numpy()


def log_panel(loggers: list[Logger], key: str, image: np.ndarray, step: int) -> None:
    """Send a grey-scale ``(h, w)`` panel to every logger that can show images (CSV cannot)."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image[None], global_step=step)
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], step=step)
