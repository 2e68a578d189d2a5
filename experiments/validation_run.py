"""The run the diagnosis scripts share: the real configs with ``overrides``, scoring the validation split.

Outputs go to a throwaway folder (these scripts print what they find and write nothing worth keeping).
"""

from __future__ import annotations

import tempfile

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from spade_pl.__main__ import config_dir
from spade_pl.job.context import JobContext
from spade_pl.job.pipeline import prepare


def validation_run(overrides: list[str], prefix: str) -> JobContext:
    """A job context whose evaluation split (``test_dataloader``) is the validation split, on 2 threads."""
    torch.set_num_threads(2)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=["eval_split=val", *overrides], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = tempfile.mkdtemp(prefix=prefix)
    return prepare(cfg)
