"""Shared fixtures: tiny composed configs of the real Hydra configs, and one tiny embedded dataset per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from spade_pl.__main__ import config_dir
from spade_pl.data.images.sample import SRSample
from spade_pl.data.mri.embedded import birdcage_maps
from spade_pl.data.mri.slice_transform import MRISample
from spade_pl.physics.mri import MultiCoilMRI
from spade_pl.physics.sr import Downsampling, make_kernel

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# A dataset, and per network a size, small enough for a CPU test to train in seconds.
TINY_DATA = [
    "data.builder.size=32",
    "data.builder.num_coils=4",
    "+data.builder.first_slice=60",
    "+data.builder.last_slice=100",
    "+data.builder.slab_slices=2",
    "+data.builder.gap_slices=2",
    "data.batch_size=2",
    "logger=csv",
    "trainer.accelerator=cpu",
    "+trainer.enable_model_summary=false",
]
TINY_NETWORKS = {
    "e2e_varnet": [
        "network.model.num_cascades=2",
        "network.model.chans=4",
        "network.model.pools=2",
        "network.model.sens_chans=2",
        "network.model.sens_pools=2",
    ],
    "varnet": ["network.model.num_cascades=2", "network.model.chans=4", "network.model.pools=2"],
    "deq": ["network.model.feats=8", "network.model.num_blocks=1", "network.model.max_iter=15"],
}


# super-resolution: small patches, small evaluation crops, a few images' worth of steps
TINY_SR_DATA = [
    "data.patch_size=16",
    "data.patches_per_image=2",
    "data.eval_size=32",
    "data.batch_size=4",
    "logger=csv",
    "trainer.accelerator=cpu",
    "+trainer.enable_model_summary=false",
]
TINY_NETWORKS.update(
    {
        "du_sr": ["network.model.iterations=2", "network.model.widths=[4,8]", "network.model.blocks=1"],
        "deq_sr": ["network.model.feats=8", "network.model.num_blocks=1", "network.model.max_iter=15"],
    }
)


def tiny_overrides(overrides: tuple[str, ...] = ()) -> list[str]:
    sr = "problem=sr" in overrides
    default = "du_sr" if sr else "e2e_varnet"
    network = next((o.split("=", 1)[1] for o in overrides if o.startswith("network=")), default)
    return [*(TINY_SR_DATA if sr else TINY_DATA), *TINY_NETWORKS.get(network, [])]


def spade_cli(
    *args: str, cwd: Path, cache: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m spade_pl ARGS`` in ``cwd`` (outputs under ``cwd/logs``), its cache in ``cache``."""
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0", **(env or {})}
    if cache is not None:
        env["SPADE_PL_CACHE"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "spade_pl", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache (embedded data, teachers) for the whole session, so the tiny dataset is built once."""
    return tmp_path_factory.mktemp("cache")


def compose_tiny(tmp_path: Path, cache_dir: Path, *overrides: str, tiny: bool = True) -> DictConfig:
    """The real configs with tiny sizes plus ``overrides``; outputs go under ``tmp_path`` (``run/``)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[*(tiny_overrides(overrides) if tiny else []), *overrides, f"paths.cache_dir={cache_dir}"],
            return_hydra_config=True,
        )
    GlobalHydra.instance().clear()
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.log_dir = str(tmp_path / "logs")
    return cfg


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory, cache_dir) -> Callable[..., str]:
    """``pretrained(*overrides)``: a tiny dense checkpoint trained with ``stage=pretrain`` and ``overrides``,
    once per session and shared by every test that asks for the same overrides (tests read it, never change it)."""
    from spade_pl.job.pipeline import run

    made: dict[tuple[str, ...], str] = {}

    def checkpoint(*overrides: str) -> str:
        if overrides not in made:
            folder = tmp_path_factory.mktemp("pretrained")
            made[overrides] = run(compose_tiny(folder, cache_dir, "stage=pretrain", *overrides))["checkpoint"]
            GlobalHydra.instance().clear()
        return made[overrides]

    return checkpoint


@pytest.fixture
def make_cfg(tmp_path, cache_dir) -> Callable[..., DictConfig]:
    """``compose_tiny`` into this test's tmp_path."""
    yield lambda *overrides, tiny=True: compose_tiny(tmp_path, cache_dir, *overrides, tiny=tiny)
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def tiny_data_root(cache_dir) -> Path:
    """The tiny embedded dataset (the same one the tiny configs use)."""
    from spade_pl.data.mri.embedded import EmbeddedMRIBuilder

    return EmbeddedMRIBuilder(
        cache_dir, size=32, num_coils=4, first_slice=60, last_slice=100, slab_slices=2, gap_slices=2
    )()


def mri_batch(with_maps: bool = True, size: int = 24, coils: int = 3) -> MRISample:
    """One multi-coil slice, every other column and the centre sampled, with (or without) the coil maps it was
    measured with: for contract tests that need a batch, not a dataset."""
    g = torch.Generator().manual_seed(0)
    maps_np = birdcage_maps(coils, size)
    maps = torch.stack([torch.from_numpy(maps_np.real), torch.from_numpy(maps_np.imag)], -1).float()[None]
    x = torch.randn(1, size, size, 2, generator=g)
    mask = torch.zeros(1, 1, 1, size, 1, dtype=torch.bool)
    mask[..., ::2, :] = True
    mask[..., size // 2 - 3 : size // 2 + 3, :] = True
    y = MultiCoilMRI(mask=mask, maps=maps).A(x)
    target, kept_maps = x.pow(2).sum(-1).sqrt(), maps if with_maps else torch.empty(0)
    return MRISample(y, mask, torch.tensor([6]), target, kept_maps, ["f"], torch.tensor([0]))


def sr_batch(size: int = 24) -> SRSample:
    """One grey image measured x2 through a Gaussian blur (no noise)."""
    g = torch.Generator().manual_seed(0)
    kernel = make_kernel("gaussian", 2)
    target = torch.rand(1, 1, size, size, generator=g)
    lr = Downsampling(kernel=kernel, scale=2, channels=1).A(target)
    return SRSample(lr, target, kernel[None], torch.tensor([2]), ["img"], torch.tensor([0]))
