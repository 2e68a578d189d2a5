"""``python -m spade_pl.data.mri.espirit DATA_FOLDER``: ESPIRiT coil maps for fastMRI files, cached beside the folder.

Networks that take coil maps from the data (``network=deq``, ``network=varnet``) need them for real
fastMRI files, which carry none. This computes ESPIRiT maps (sigpy's ``EspiritCalib``; install the extra
``pip install 'spade-pl[espirit]'``) for every slice of every ``.h5`` file in DATA_FOLDER (and in its
``train/``, ``val/``, ``test/`` sub-folders) and writes them, one file per volume with a ``sens_maps``
dataset ``(slices, coils, H, W)``, into the sibling folder ``DATA_FOLDER_espirit/`` (not inside the data
folder: fastmri's SliceDataset opens every file there). The datamodule picks the cache up by itself.
Files already cached are skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np

from spade_pl.core.atomic_io import atomic_write
from spade_pl.core.errors import SpadeInputError, require
from spade_pl.data.mri.hdf5 import SENS_MAPS_KEY


def espirit_cache_dir(folder: Path) -> Path:
    """Where the maps of the files in ``folder`` are cached."""
    return folder.parent / f"{folder.name}_espirit"


def espirit_command(folder: Path) -> str:
    return f"python -m spade_pl.data.mri.espirit {folder}"


def espirit_maps(kspace: np.ndarray, calib_width: int, threshold: float, crop: float) -> np.ndarray:
    """ESPIRiT maps ``(coils, H, W)`` of one fully or partially sampled slice ``(coils, H, W)``."""
    try:
        from sigpy.mri.app import EspiritCalib
    except ImportError:
        raise SpadeInputError("ESPIRiT needs sigpy: pip install 'spade-pl[espirit]' (or pip install sigpy)") from None
    maps = EspiritCalib(kspace, calib_width=calib_width, thresh=threshold, crop=crop, show_pbar=False).run()
    return np.asarray(maps, dtype=np.complex64)


def data_folders(root: Path) -> list[Path]:
    """``root`` and its split sub-folders, whichever hold .h5 files."""
    candidates = [root, *(root / split for split in ("train", "val", "test"))]
    return [f for f in candidates if f.is_dir() and any(f.glob("*.h5"))]


def cache_folder(root: Path, calib_width: int = 24, threshold: float = 0.02, crop: float = 0.95) -> list[Path]:
    """Compute and cache the maps of every file under ``root``; returns the cache files written."""
    require(root.is_dir(), f"data folder {root} does not exist")
    folders = data_folders(root)
    require(bool(folders), f"data folder {root} has no HDF5 (.h5) files (nor its train/val/test sub-folders)")
    written = []
    for folder in folders:
        for path in sorted(folder.glob("*.h5")):
            target = espirit_cache_dir(folder) / path.name
            if target.is_file():
                print(f"[espirit] {path.name}: cached already", flush=True)
                continue
            with h5py.File(path, "r") as hf:
                require("kspace" in hf, f"HDF5 file {path} has no 'kspace' dataset")
                kspace = hf["kspace"][()]
            maps = np.stack([espirit_maps(k, calib_width, threshold, crop) for k in kspace])

            def write(f, maps=maps) -> None:
                with h5py.File(f, "w") as out:
                    out.create_dataset(SENS_MAPS_KEY, data=maps)

            atomic_write(target, write)
            print(f"[espirit] {path.name}: {len(kspace)} slice(s) -> {target}", flush=True)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--calib-width", type=int, default=24, help="fully sampled centre lines used (default 24)")
    parser.add_argument("--threshold", type=float, default=0.02, help="calibration singular-value threshold")
    parser.add_argument("--crop", type=float, default=0.95, help="eigenvalue crop: zero maps outside the object")
    args = parser.parse_args(argv)
    try:
        cache_folder(args.folder, args.calib_width, args.threshold, args.crop)
    except SpadeInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
