"""Writing and checking files in the fastMRI multi-coil HDF5 schema.

One writer serves the embedded-data builder, the ESPIRiT cache and the tests, so every file we make
is readable by the unmodified ``fastmri.data.SliceDataset``.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from spade_pl.core.atomic_io import atomic_write
from spade_pl.core.errors import SpadeInputError

SENS_MAPS_KEY = "sens_maps"

_HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <encoding>
    <encodedSpace><matrixSize><x>{ex}</x><y>{ey}</y><z>1</z></matrixSize></encodedSpace>
    <reconSpace><matrixSize><x>{rx}</x><y>{ry}</y><z>1</z></matrixSize></reconSpace>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{kmax}</maximum><center>{kcenter}</center>
      </kspace_encoding_step_1>
    </encodingLimits>
  </encoding>
</ismrmrdHeader>
"""


def ismrmrd_header(height: int, width: int, recon_size: tuple[int, int] | None = None) -> str:
    """Minimal ISMRMRD header with what SliceDataset parses (matrix sizes, phase-encode limits)."""
    rx, ry = recon_size if recon_size is not None else (height, width)
    return _HEADER.format(ex=height, ey=width, rx=rx, ry=ry, kmax=width - 1, kcenter=width // 2)


def rss(coil_images: np.ndarray, axis: int = 1) -> np.ndarray:
    return np.sqrt((np.abs(coil_images) ** 2).sum(axis=axis))


def fft2c(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D FFT over the last two axes (fastmri.fft2c's convention, in numpy)."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def write_multicoil_file(
    path: str | Path,
    kspace: np.ndarray,
    *,
    sens_maps: np.ndarray | None = None,
    acquisition: str = "AXT2",
    patient_id: str = "",
) -> Path:
    """Write ``kspace`` (slices, coils, H, W) complex as a fastMRI multi-coil file (atomically).

    ``reconstruction_rss`` and the ``max``/``norm`` attributes are derived from the k-space the way
    fastMRI derives them; coil maps (slices, coils, H, W), when given, go under the extra key ``sens_maps``.
    """
    kspace = np.asarray(kspace, dtype=np.complex64)
    if kspace.ndim != 4:
        raise ValueError(f"kspace must be (slices, coils, H, W), got shape {kspace.shape}")
    target = rss(ifft2c(kspace)).astype(np.float32)
    _, _, height, width = kspace.shape

    def write(f) -> None:
        with h5py.File(f, "w") as hf:
            hf.create_dataset("kspace", data=kspace)
            hf.create_dataset("reconstruction_rss", data=target)
            hf.create_dataset("ismrmrd_header", data=ismrmrd_header(height, width))
            if sens_maps is not None:
                if sens_maps.shape != kspace.shape:
                    raise ValueError(f"sens_maps shape {sens_maps.shape} != kspace shape {kspace.shape}")
                hf.create_dataset(SENS_MAPS_KEY, data=np.asarray(sens_maps, dtype=np.complex64))
            hf.attrs["max"] = float(target.max())
            hf.attrs["norm"] = float(np.linalg.norm(target))
            hf.attrs["acquisition"] = acquisition
            hf.attrs["patient_id"] = patient_id

    return atomic_write(path, write)


def check_multicoil_file(path: Path) -> None:
    """Fail with one line naming the file when it is not a readable fastMRI multi-coil file."""
    try:
        with h5py.File(path, "r") as hf:
            if "kspace" not in hf:
                raise SpadeInputError(
                    f"HDF5 file {path} has no 'kspace' dataset; a fastMRI multi-coil file needs "
                    f"'kspace' (slices, coils, H, W) and 'ismrmrd_header'"
                )
            if hf["kspace"].ndim != 4:
                raise SpadeInputError(
                    f"HDF5 file {path}: 'kspace' has shape {hf['kspace'].shape}; expected multi-coil "
                    f"(slices, coils, H, W)"
                )
            if "ismrmrd_header" not in hf:
                raise SpadeInputError(f"HDF5 file {path} has no 'ismrmrd_header'; fastMRI files carry one")
            if SENS_MAPS_KEY in hf and hf[SENS_MAPS_KEY].shape != hf["kspace"].shape:
                raise SpadeInputError(
                    f"HDF5 file {path}: '{SENS_MAPS_KEY}' has shape {hf[SENS_MAPS_KEY].shape} but 'kspace' "
                    f"{hf['kspace'].shape}; coil maps need one map per coil and slice, of the k-space's size"
                )
    except OSError as err:
        raise SpadeInputError(f"{path} is not a readable HDF5 file ({err})") from None
