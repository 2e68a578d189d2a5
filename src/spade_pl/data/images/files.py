"""Image files at their own bit depth: 8- and 16-bit (and 32-bit) integer PNG / TIFF / JPEG / BMP, float TIFF, grey,
RGB and RGBA, as float32 in [0, 1].

Integers are divided by their type's range (``uint8`` by 255, ``uint16`` by 65,535, ...), so a 16-bit microscopy or
MRI slice keeps its 16 bits instead of saturating at 8; float images are taken as stored and must lie in [0, 1].
Pillow decodes PNG, JPEG and BMP, but reads a 16-bit *colour* PNG at 8 bits only, so those go through pypng;
TIFFs (any depth, planar or interleaved) through tifffile. Alpha is dropped; grey files feed colour networks as
three equal channels, colour files feed grey networks as their ITU-R 601 luma (what Pillow's ``convert("L")`` does
for 8-bit files, which keep that exact path). Images written back (``stage=reconstruct``) keep the format and bit
depth of the file they come from.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np

from spade_pl.core.errors import SpadeInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")
#: ITU-R 601-2 luma weights (Pillow's "L" conversion)
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def read_image(path: Path, channels: int) -> np.ndarray:
    """``(C, H, W)`` float32 in [0, 1], ``C`` = ``channels`` (1: grey, 3: RGB) whatever the file holds.

    Decoded images are cached (training draws many patches per image), keyed by the file's modification time.
    """
    try:
        modified = path.stat().st_mtime_ns
    except OSError as err:
        raise SpadeInputError(f"image {path} cannot be read ({err})") from None
    return _decode(path, channels, modified)


@functools.lru_cache(maxsize=64)
def _decode(path: Path, channels: int, modified: int) -> np.ndarray:
    values = unit_range(_stored_pixels(path, channels), path)
    return with_channels(values, channels)


def _stored_pixels(path: Path, channels: int) -> np.ndarray:
    try:
        return _pixels(path, channels)
    except SpadeInputError:
        raise
    except Exception as err:  # noqa: BLE001 - any decoder's failure is an unreadable file to the user
        raise SpadeInputError(
            f"image {path} cannot be read ({type(err).__name__}: {err}); allowed: {', '.join(IMAGE_SUFFIXES)} files"
        ) from None


def _pixels(path: Path, channels: int) -> np.ndarray:
    """The stored values, ``(H, W)`` or ``(H, W, C)``, in the file's own dtype."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        array = tifffile.imread(path, key=0)
        if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
            array = array.transpose(1, 2, 0)  # planar (C, H, W) storage
        return array
    from PIL import Image

    with Image.open(path) as image:
        rawmode = str(image.tile[0].args) if image.tile else ""
        if image.format == "PNG" and image.mode in ("RGB", "RGBA", "LA") and ";16" in rawmode:
            return _png16(path)
        if image.mode in ("1", "L", "LA", "RGB", "RGBA", "P", "CMYK", "YCbCr", "PA", "La", "RGBa"):
            # 8 bits per channel: Pillow's own conversion
            return np.asarray(image.convert("L" if channels == 1 else "RGB"))
        if image.mode.startswith("I;16"):
            return np.asarray(image).astype(np.uint16)
        return np.asarray(image)  # "I" (int32) or "F" (float32)


def stored_dtype(path: Path) -> np.dtype:
    """The type ``path`` stores its pixels in (its bit depth), checked writable in ``path``'s format."""
    dtype = _stored_pixels(path, 3).dtype
    suffix = path.suffix.lower()
    allowed = (np.uint8, np.uint16) if suffix == ".png" else (np.uint8,) if suffix not in TIFF_SUFFIXES else None
    if allowed is not None and dtype not in allowed:
        raise SpadeInputError(
            f"image {path} stores {dtype} pixels, which its format cannot be written with here; allowed: 8-bit "
            f"PNG/JPEG/BMP, 16-bit PNG, TIFF of any type"
        )
    return dtype


def write_image(file: io.BytesIO, values: np.ndarray, like: Path) -> None:
    """``values`` ``(C, H, W)`` in [0, 1] into ``file`` in the format (suffix) and bit depth of the image ``like``:
    integers scaled by their type's range (the inverse of :func:`read_image`), floats as they are."""
    dtype = stored_dtype(like)
    values = np.clip(values, 0, 1)
    pixels = values.transpose(1, 2, 0) if values.shape[0] > 1 else values[0]
    if np.issubdtype(dtype, np.integer):
        pixels = np.round(pixels * np.iinfo(dtype).max).astype(dtype)
    else:
        pixels = pixels.astype(dtype)
    suffix = like.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        import tifffile

        tifffile.imwrite(file, pixels, photometric="rgb" if pixels.ndim == 3 else "minisblack")
    elif dtype == np.uint16 and pixels.ndim == 3:  # Pillow cannot write 16-bit colour
        import png

        height, width, planes = pixels.shape
        png.Writer(width, height, greyscale=False, bitdepth=16).write(file, pixels.reshape(height, width * planes))
    else:
        from PIL import Image

        format_name = Image.registered_extensions()[suffix]
        Image.fromarray(pixels).save(file, format=format_name, **({"quality": 95} if format_name == "JPEG" else {}))


def _png16(path: Path) -> np.ndarray:
    """A 16-bit colour PNG at its full depth (pypng: Pillow would keep 8 of the 16 bits)."""
    import png

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    return np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)


def unit_range(pixels: np.ndarray, path: Path) -> np.ndarray:
    """Integers divided by their type's range; floats as stored, which must be finite and within [0, 1]."""
    if pixels.dtype == np.bool_:
        return pixels.astype(np.float32)
    if np.issubdtype(pixels.dtype, np.integer):
        low = int(pixels.min())
        if low < 0:
            raise SpadeInputError(
                f"image {path} holds negative {pixels.dtype} values (down to {low}); allowed: unsigned integer images "
                f"(scaled by their type's range) or float images in [0, 1]"
            )
        return (pixels / np.iinfo(pixels.dtype).max).astype(np.float32)
    values = pixels.astype(np.float32)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not (np.isfinite(values).all() and low >= 0 and high <= 1):
        raise SpadeInputError(
            f"image {path} holds {pixels.dtype} values in [{low:g}, {high:g}]; allowed: float images in [0, 1] "
            f"(or integer images, scaled by their type's range)"
        )
    return values


def with_channels(values: np.ndarray, channels: int) -> np.ndarray:
    """``(H, W)`` / ``(H, W, C)`` -> ``(channels, H, W)``: alpha dropped, grey repeated, colour to luma."""
    if values.ndim == 3 and values.shape[-1] in (2, 4):
        values = values[..., :-1]  # grey + alpha, RGB + alpha
    if values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.ndim == 2:
        return np.repeat(values[None], channels, axis=0)
    if channels == 1:
        return (values[..., :3] @ LUMA)[None].astype(np.float32)
    return np.ascontiguousarray(values[..., :3].transpose(2, 0, 1))
