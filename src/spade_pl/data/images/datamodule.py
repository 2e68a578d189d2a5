"""Super-resolution data: folders of high-resolution images (DIV2K, Set5, Set14, BSD100 layouts), split by image.

The low-resolution measurements are made by the configured physics, ``y = (k ∗ x)↓s + n`` (or read from a folder
of given LR images, ``lr_root``, DIV2K's ``<name>x2.png`` style with ``lr_suffix``): random HR patches
(and flips / quarter turns) for training, whole images (cropped to a multiple of the scale, optionally to
``eval_size``) for validation and test, with noise drawn from a generator seeded by the image name so that
validation and test measurements never change. The embedded default (:class:`EmbeddedImagesBuilder`) writes
images that ship inside scikit-image into the cache, split by image.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from spade_pl.core.atomic_io import folder_built_once
from spade_pl.core.errors import require
from spade_pl.data.images.files import IMAGE_SUFFIXES, read_image
from spade_pl.data.images.reconstruction import ImageReconstructions, MeasuredImages
from spade_pl.data.images.sample import SRSample
from spade_pl.data.splits import SPLITS, SplitDataModule, Splits
from spade_pl.physics.sr import Downsampling, make_kernel

CHANNELS = (1, 3)


def _name_seed(name: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{name}".encode()).digest()[:4], "little")


class SRDataset(Dataset):
    """HR images -> (LR measurements, HR target) pairs: through the physics ``y = (k ∗ x)↓s + n``, or, with
    ``lr_files`` (given pairs), the LR image of the same name (then the physics is the *assumed* operator)."""

    def __init__(
        self,
        files: Sequence[Path],
        kernel: Tensor,
        scale: int,
        noise_std: float,
        channels: int,
        patch_size: int | None,
        patches_per_image: int = 1,
        eval_size: int | None = None,
        seed: int = 0,
        lr_files: dict[str, Path] | None = None,
    ):
        self.files = list(files)
        self.kernel = kernel
        self.physics = Downsampling(kernel=kernel, scale=scale, channels=channels)
        self.scale = scale
        self.noise_std = float(noise_std)
        self.channels = channels
        self.patch_size = patch_size  # None: whole images (validation, test)
        self.patches_per_image = patches_per_image if patch_size else 1
        self.eval_size = eval_size
        self.seed = seed
        self.lr_files = lr_files
        smallest = patch_size or 2 * scale
        for path in self.files:
            height, width = read_image(path, channels).shape[-2:]
            require(
                min(height, width) >= smallest,
                f"image {path} is {height}x{width}, smaller than {smallest} pixels "
                + ("(data.patch_size)" if patch_size else f"(twice the scale {scale})"),
            )
            if lr_files is not None:
                require(path.stem in lr_files, f"no low-resolution image for {path.name} in data.lr_root")
                lr_shape = read_image(lr_files[path.stem], channels).shape[-2:]
                require(
                    tuple(lr_shape) == (height // scale, width // scale),
                    f"low-resolution image {lr_files[path.stem]} is {lr_shape[0]}x{lr_shape[1]}; with {path.name} "
                    f"({height}x{width}) at scale {scale} it must be {height // scale}x{width // scale}",
                )

    def __len__(self) -> int:
        return len(self.files) * self.patches_per_image

    def _window(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the HR crop, all on the scale's grid (so the LR crop is exact)."""
        s = self.scale
        if self.patch_size:
            size = self.patch_size - self.patch_size % s
            top = s * int(torch.randint(0, (height - size) // s + 1, ()))
            left = s * int(torch.randint(0, (width - size) // s + 1, ()))
            return top, left, size, size
        crop_h, crop_w = min(height, self.eval_size or height), min(width, self.eval_size or width)
        crop_h, crop_w = crop_h - crop_h % s, crop_w - crop_w % s
        return (height - crop_h) // 2 // s * s, (width - crop_w) // 2 // s * s, crop_h, crop_w

    def __getitem__(self, index: int) -> SRSample:
        path = self.files[index // self.patches_per_image]
        image = torch.from_numpy(read_image(path, self.channels))
        top, left, height, width = self._window(*image.shape[-2:])
        target = image[:, top : top + height, left : left + width].clone()
        if self.lr_files is None:
            # augment the HR patch *before* measuring it: flipping or turning a measured pair would move the
            # decimation grid (the kept pixel of each s x s block) and train on pairs the physics cannot produce
            (target,) = self._augment(target)
            clean = self.physics.A(target[None])[0]
            generator = None if self.patch_size else torch.Generator().manual_seed(_name_seed(path.name, self.seed))
            lr = clean + torch.randn(clean.shape, generator=generator) * self.noise_std
        else:  # given pairs (centred resampling, e.g. imresize): the same flip and quarter turn for both
            s = self.scale
            lr_image = torch.from_numpy(read_image(self.lr_files[path.stem], self.channels))
            lr = lr_image[:, top // s : (top + height) // s, left // s : (left + width) // s].clone()
            target, lr = self._augment(target, lr)
        return SRSample(lr.contiguous(), target.contiguous(), self.kernel, self.scale, path.name, 0)

    def _augment(self, *images: Tensor) -> tuple[Tensor, ...]:
        """One random flip and quarter turn, applied alike to every image (training patches only)."""
        if not self.patch_size:
            return images
        flip, turns = bool(torch.rand(()) < 0.5), int(torch.randint(0, 4, ()))
        return tuple(torch.rot90(t.flip(-1) if flip else t, turns, dims=(-2, -1)) for t in images)


def index_lr_files(lr_root: Path, suffix: str) -> dict[str, Path]:
    """``{HR stem: LR file}`` for the images below ``lr_root`` named ``<HR stem><suffix>.<ext>`` (DIV2K: x2)."""
    require(lr_root.is_dir(), f"data.lr_root {lr_root} does not exist")
    index = {
        p.stem[: len(p.stem) - len(suffix)]: p
        for p in lr_root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.stem.endswith(suffix)
    }
    require(len(index) > 0, f"data.lr_root {lr_root} has no images named <name>{suffix}.<png|jpg|...>")
    return index


class ImageDataModule(SplitDataModule):
    """Super-resolution data from image folders; splits by image (see :mod:`spade_pl.data.splits`)."""

    physics_type = Downsampling

    def __init__(
        self,
        root: str | None,
        scale: int,
        kernel: str = "gaussian",
        sigma: float | None = None,
        noise_std: float = 0.01,
        channels: int = 1,
        patch_size: int = 64,
        patches_per_image: int = 16,
        eval_size: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        train_dir: str | None = None,
        val_dir: str | None = None,
        test_dir: str | None = None,
        split_file: str | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        lr_root: str | None = None,
        lr_suffix: str = "",
        builder: EmbeddedImagesBuilder | None = None,
    ):
        super().__init__(batch_size, num_workers)
        require(root is not None or builder is not None, "data.root is not set; point it at a folder of images")
        require(channels in CHANNELS, f"data.channels={channels} is invalid; allowed: 1 (grey) or 3 (RGB)")
        require(noise_std >= 0, f"problem.noise_std={noise_std} is invalid; allowed: >= 0")
        require(int(patch_size) >= 2 * int(scale), f"data.patch_size={patch_size} is invalid; allowed: >= 2 x scale")
        require(int(patches_per_image) >= 1, f"data.patches_per_image={patches_per_image} is invalid; allowed: >= 1")
        self.root = Path(root) if root is not None else builder.root
        builder = builder if root is None else None  # your own folder: the embedded images are not needed
        self.kernel = make_kernel(kernel, int(scale), sigma)
        Downsampling(kernel=self.kernel, scale=int(scale))  # validates the scale before any work
        self.scale, self.noise_std, self.channels = int(scale), float(noise_std), int(channels)
        self.patch_size, self.patches_per_image = int(patch_size), int(patches_per_image)
        self.eval_size, self.seed = eval_size, int(seed)
        split_dirs = {"train": train_dir, "val": val_dir, "test": test_dir}
        self.splits = Splits(self.root, split_dirs, split_file, split_fractions, IMAGE_SUFFIXES, "image")
        self.builder = builder
        self.lr_files = index_lr_files(Path(lr_root), lr_suffix) if lr_root is not None else None

    def prepare_data(self) -> None:
        if self.builder is not None:
            self.builder()

    def build_dataset(self, split: str, purpose: str) -> SRDataset:
        _, files, _ = self.splits.files(split, strict=False)
        training = purpose == "train"
        return SRDataset(
            files,
            self.kernel,
            self.scale,
            self.noise_std,
            self.channels,
            patch_size=self.patch_size if training else None,
            patches_per_image=self.patches_per_image,
            eval_size=self.eval_size,
            seed=self.seed,
            lr_files=self.lr_files,
        )

    def reconstruction_dataset(self, split: str | None) -> ImageReconstructions:
        """The images directly in ``root`` as measurements (``split=None``: low-resolution images, no ground
        truth), or a split's high-resolution images measured as ``stage=test`` measures them (scored)."""
        if split is not None:
            dataset = self._dataset(split, "eval")
            return ImageReconstructions(dataset, dataset.files, scored=True)
        require(self.root.is_dir(), f"data folder {self.root} does not exist (data.root)")
        files = sorted(p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        require(
            bool(files),
            f"data folder {self.root} has no images to reconstruct (data.root); allowed: {', '.join(IMAGE_SUFFIXES)}",
        )
        measured = MeasuredImages(files, self.kernel, self.scale, self.channels)
        return ImageReconstructions(measured, files, scored=False)

    def synthetic_batch(self, size: int, coils: int = 0) -> SRSample:
        """One ``size``² high-resolution image (scikit-image's camera, resized) for the benchmark."""
        from skimage import data as skdata

        image = torch.from_numpy(skdata.camera().astype(np.float32) / 255.0)[None, None]
        image = F.interpolate(image, size=(size, size), mode="area")[0].repeat(self.channels, 1, 1)
        size -= size % self.scale
        target = image[:, :size, :size].contiguous()
        lr = Downsampling(kernel=self.kernel, scale=self.scale).A(target[None])[0]
        return default_collate([SRSample(lr, target, self.kernel, self.scale, "synthetic", 0)])


# scikit-image's bundled images (no download), split by image; camera, coffee and moon are the test images
EMBEDDED_SPLITS = {
    "train": (
        "astronaut",
        "rocket",
        "hubble_deep_field",
        "retina",
        "brick",
        "grass",
        "gravel",
        "immunohistochemistry",
        "page",
        "text",
        "cell",
    ),
    "val": ("chelsea", "coins"),
    "test": ("camera", "coffee", "moon"),
}


class EmbeddedImagesBuilder:
    """Writes scikit-image's bundled images as PNGs into ``<cache>/embedded_images_<key>/{train,val,test}/``."""

    def __init__(self, cache_dir: str | Path, splits: dict[str, Sequence[str]] | None = None):
        self.cache_dir = Path(cache_dir)
        self.splits = {k: list(v) for k, v in (splits or EMBEDDED_SPLITS).items()}
        key = hashlib.sha1(json.dumps(self.splits, sort_keys=True).encode()).hexdigest()[:10]
        self.root = self.cache_dir / f"embedded_images_{key}"

    def __call__(self) -> Path:
        def fill(staging: Path) -> None:
            from PIL import Image
            from skimage import data as skdata

            print(f"[data] writing the embedded super-resolution images into {self.root} (once)", flush=True)
            for split in SPLITS:
                (staging / split).mkdir()
                for name in self.splits[split]:
                    array = getattr(skdata, name)()
                    if array.dtype != np.uint8:  # e.g. float images: to 8 bits like the others
                        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
                    image = Image.fromarray(array[..., :3] if array.ndim == 3 else array)
                    image.save(staging / split / f"{name}.png")
            (staging / "manifest.json").write_text(json.dumps(self.splits, indent=2))

        return folder_built_once(self.root, fill)
