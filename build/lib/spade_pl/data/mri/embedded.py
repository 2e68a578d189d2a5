"""Embedded default data: a small multi-coil CS-MRI dataset in the exact fastMRI schema, built offline.

Anatomy: nilearn's bundled MNI152 T1 template (a real, if averaged and skull-stripped, 1 mm brain MRI
shipped inside the pip package, so nothing is downloaded). Axial slices are cut into slabs; each slab
is one "volume" file, and slabs are assigned to train/val/test with gaps between them so that no
split shares (or borders) a slice of another. Every volume gets its own coil geometry and smooth
random phase; simulated birdcage coil maps are stored under the extra key ``sens_maps``.
Deterministic from ``seed``; built once into a cache folder and reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spade_pl.core.atomic_io import folder_built_once
from spade_pl.core.errors import SpadeInputError
from spade_pl.data.mri.hdf5 import fft2c, write_multicoil_file
from spade_pl.data.splits import SPLITS

_BUILDER_VERSION = 2


@dataclass(frozen=True)
class EmbeddedMRIConfig:
    """What the embedded dataset looks like; its hash names the cache folder."""

    size: int = 128
    num_coils: int = 8
    slab_slices: int = 6
    gap_slices: int = 2
    first_slice: int = 40
    last_slice: int = 150
    split_pattern: tuple[str, ...] = ("train", "test", "train", "val", "train")
    noise_std: float = 0.0
    seed: int = 0

    def key(self) -> str:
        blob = json.dumps({"v": _BUILDER_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


def birdcage_maps(num_coils: int, size: int, radius: float = 1.3, rotation: float = 0.0) -> np.ndarray:
    """Simulated birdcage coil sensitivities (num_coils, size, size), normalised so Σ|S_c|² = 1."""
    coords = np.linspace(-1.0, 1.0, size)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    maps = np.empty((num_coils, size, size), dtype=np.complex128)
    for c in range(num_coils):
        angle = 2 * np.pi * c / num_coils + rotation
        cy, cx = radius * np.sin(angle), radius * np.cos(angle)
        dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        phase = np.arctan2(yy - cy, xx - cx) + angle
        maps[c] = np.exp(1j * phase) / dist
    return maps / np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))


def smooth_phase(size: int, rng: np.random.Generator, max_freq: int = 2, amplitude: float = np.pi) -> np.ndarray:
    """A random, spatially smooth phase map (sum of a few low-frequency cosines), in radians."""
    coords = np.linspace(0, 1, size)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    phase = np.zeros((size, size))
    for fy in range(max_freq + 1):
        for fx in range(max_freq + 1):
            phase += rng.normal() * np.cos(np.pi * (fy * yy + fx * xx) + rng.uniform(0, 2 * np.pi))
    return amplitude * phase / (np.abs(phase).max() + 1e-12)


def load_anatomy(size: int, first: int, last: int) -> np.ndarray:
    """Axial slices ``first..last-1`` of the MNI152 T1 template, zero-padded square and resized, in [0, 1]."""
    from nilearn.datasets import load_mni152_template  # slow import; only needed when building

    volume = np.asarray(load_mni152_template(resolution=1).get_fdata(), dtype=np.float32)  # (x, y, z)
    slices = np.transpose(volume[:, :, first:last], (2, 1, 0))[:, ::-1, :]  # (z, y, x), anterior up
    side = max(slices.shape[1:])
    pad_y, pad_x = side - slices.shape[1], side - slices.shape[2]
    slices = np.pad(slices, ((0, 0), (pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2)))
    resized = F.interpolate(torch.from_numpy(slices.copy())[:, None], size=(size, size), mode="area")[:, 0]
    return (resized / resized.max()).numpy()


def simulate_volume(images: np.ndarray, maps: np.ndarray, rng: np.random.Generator, noise_std: float) -> np.ndarray:
    """Magnitude slices -> complex image with smooth phase -> coil images -> centred FFT (+ noise)."""
    size = images.shape[-1]
    complex_images = images * np.exp(1j * smooth_phase(size, rng))
    kspace = fft2c(complex_images[:, None] * maps[None])
    if noise_std > 0:
        scale = noise_std * np.abs(kspace).max()
        kspace = kspace + scale * (rng.normal(size=kspace.shape) + 1j * rng.normal(size=kspace.shape))
    return kspace


def embedded_root(cache_dir: str | Path, config: EmbeddedMRIConfig) -> Path:
    return Path(cache_dir) / f"embedded_mri_{config.key()}"


def build_embedded_mri(cache_dir: str | Path, config: EmbeddedMRIConfig | None = None) -> Path:
    """Build (once) and return the dataset root holding ``train/``, ``val/`` and ``test/`` folders."""
    config = config or EmbeddedMRIConfig()
    root = embedded_root(cache_dir, config)

    def fill(staging: Path) -> None:
        print(f"[data] building the embedded fastMRI-format dataset into {root} (once)", flush=True)
        anatomy = load_anatomy(config.size, config.first_slice, config.last_slice)
        rng = np.random.default_rng(config.seed)
        manifest: dict[str, list[str]] = {split: [] for split in SPLITS}
        stride = config.slab_slices + config.gap_slices
        for slab, start in enumerate(range(0, len(anatomy) - config.slab_slices + 1, stride)):
            split = config.split_pattern[slab % len(config.split_pattern)]
            maps = birdcage_maps(config.num_coils, config.size, rotation=rng.uniform(0, 2 * np.pi))
            kspace = simulate_volume(anatomy[start : start + config.slab_slices], maps, rng, config.noise_std)
            name = f"mni152_slab{slab:02d}.h5"
            (staging / split).mkdir(exist_ok=True)
            per_slice_maps = np.broadcast_to(maps, kspace.shape)  # the schema stores maps per slice, like ESPIRiT
            write_multicoil_file(
                staging / split / name,
                kspace,
                sens_maps=per_slice_maps,
                acquisition="AXT1",
                patient_id=f"mni152-{slab}",
            )
            manifest[split].append(name)
        empty = [split for split, names in manifest.items() if not names]
        if empty:
            raise SpadeInputError(
                f"embedded data config gives no volume to split(s) {empty}: slices "
                f"{config.first_slice}..{config.last_slice} "
                f"make too few slabs of {config.slab_slices}+{config.gap_slices} for the pattern "
                f"{config.split_pattern}"
            )
        (staging / "manifest.json").write_text(json.dumps({"config": asdict(config), "splits": manifest}, indent=2))

    return folder_built_once(root, fill)


class EmbeddedMRIBuilder:
    """Hydra-friendly handle: ``.root`` says where the data lives, calling it builds the data if missing."""

    def __init__(self, cache_dir: str | Path, **config):
        self.cache_dir = Path(cache_dir)
        self.config = EmbeddedMRIConfig(**config)

    @property
    def root(self) -> Path:
        return embedded_root(self.cache_dir, self.config)

    def __call__(self) -> Path:
        return build_embedded_mri(self.cache_dir, self.config)
