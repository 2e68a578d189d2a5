"""Images at their own bit depth: every common kind of file is written here and read back with its values."""

from __future__ import annotations

import numpy as np
import png
import pytest
import tifffile
from PIL import Image

from spade_pl.core.errors import SpadeInputError
from spade_pl.data.images.files import LUMA, read_image

RNG = np.random.default_rng(0)
GREY16 = (RNG.random((12, 10)) * 65535).astype(np.uint16)
RGB16 = (RNG.random((12, 10, 3)) * 65535).astype(np.uint16)
RGBA16 = (RNG.random((12, 10, 4)) * 65535).astype(np.uint16)
GREY8 = (RNG.random((12, 10)) * 255).astype(np.uint8)
RGB8 = (RNG.random((12, 10, 3)) * 255).astype(np.uint8)
FLOAT = RNG.random((12, 10)).astype(np.float32)
FLOAT_RGB = RNG.random((12, 10, 3)).astype(np.float32)


def write_png16(path, array: np.ndarray) -> None:
    """A 16-bit PNG (grey, RGB or RGBA) through pypng: Pillow cannot write 16-bit colour."""
    planes = 1 if array.ndim == 2 else array.shape[2]
    writer = png.Writer(
        width=array.shape[1], height=array.shape[0], bitdepth=16, greyscale=planes in (1, 2), alpha=planes in (2, 4)
    )
    with open(path, "wb") as f:
        writer.write(f, array.reshape(array.shape[0], -1).tolist())


def grey(array: np.ndarray) -> np.ndarray:
    return array[None]


def planes(array: np.ndarray) -> np.ndarray:
    return array[..., :3].transpose(2, 0, 1)


# (file name, writer, values expected for channels=1, for channels=3)
CASES = {
    "grey16.png": (
        lambda p: Image.fromarray(GREY16).save(p),
        grey(GREY16 / 65535),
        np.repeat(grey(GREY16 / 65535), 3, 0),
    ),
    "rgb16.png": (lambda p: write_png16(p, RGB16), (RGB16 / 65535 @ LUMA)[None], planes(RGB16 / 65535)),
    "rgba16.png": (lambda p: write_png16(p, RGBA16), (RGBA16[..., :3] / 65535 @ LUMA)[None], planes(RGBA16 / 65535)),
    "grey8.png": (lambda p: Image.fromarray(GREY8).save(p), grey(GREY8 / 255), np.repeat(grey(GREY8 / 255), 3, 0)),
    "rgb8.png": (
        lambda p: Image.fromarray(RGB8).save(p),
        grey(np.asarray(Image.fromarray(RGB8).convert("L")) / 255),
        planes(RGB8 / 255),
    ),
    "grey8.bmp": (lambda p: Image.fromarray(GREY8).save(p), grey(GREY8 / 255), np.repeat(grey(GREY8 / 255), 3, 0)),
    "grey16.tif": (lambda p: tifffile.imwrite(p, GREY16), grey(GREY16 / 65535), np.repeat(grey(GREY16 / 65535), 3, 0)),
    "rgb16.tif": (lambda p: tifffile.imwrite(p, RGB16), (RGB16 / 65535 @ LUMA)[None], planes(RGB16 / 65535)),
    "rgb16_planar.tiff": (
        lambda p: tifffile.imwrite(p, RGB16.transpose(2, 0, 1), planarconfig="separate"),
        (RGB16 / 65535 @ LUMA)[None],
        planes(RGB16 / 65535),
    ),
    "rgb8.tif": (lambda p: tifffile.imwrite(p, RGB8), (RGB8 / 255 @ LUMA)[None], planes(RGB8 / 255)),
    "float.tif": (lambda p: tifffile.imwrite(p, FLOAT), grey(FLOAT), np.repeat(grey(FLOAT), 3, 0)),
    "float_rgb.tif": (lambda p: tifffile.imwrite(p, FLOAT_RGB), (FLOAT_RGB @ LUMA)[None], planes(FLOAT_RGB)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("channels", [1, 3])
def test_each_kind_of_file_reads_back_its_values(tmp_path, name, channels):
    write, expected_grey, expected_rgb = CASES[name]
    write(tmp_path / name)
    values = read_image(tmp_path / name, channels)
    expected = expected_grey if channels == 1 else expected_rgb
    assert values.dtype == np.float32 and values.shape == (channels, 12, 10)
    np.testing.assert_allclose(values, expected, atol=1e-6)


def test_a_16_bit_mri_slice_keeps_its_16_bits(tmp_path):
    """Values up to 64,500 of 65,535: none saturate, and two values one unit apart stay apart."""
    slice_ = np.zeros((32, 32), np.uint16)
    slice_[8:24, 8:24] = np.linspace(1000, 64_500, 256).astype(np.uint16).reshape(16, 16)
    slice_[0, 0], slice_[0, 1] = 30_000, 30_001
    Image.fromarray(slice_).save(tmp_path / "mri.png")
    values = read_image(tmp_path / "mri.png", 1)[0]
    assert (values == 1.0).sum() == 0 and values.max() == pytest.approx(64_500 / 65_535)
    assert values[0, 1] > values[0, 0]


def test_jpeg_is_read_at_8_bits(tmp_path):
    smooth = np.stack([*np.meshgrid(np.linspace(0, 255, 10), np.linspace(0, 255, 12)), np.full((12, 10), 128.0)], -1)
    Image.fromarray(smooth.astype(np.uint8)).save(tmp_path / "photo.jpg", quality=100, subsampling=0)
    assert np.abs(read_image(tmp_path / "photo.jpg", 3) - planes(smooth / 255)).max() < 0.02


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (FLOAT * 3, r"holds float32 values in \[.*, 2\.9.*\]; allowed: float images in \[0, 1\]"),
        (FLOAT - 0.5, r"holds float32 values in \[-0\.4.*\]; allowed: float images in \[0, 1\]"),
        (np.full((12, 10), np.nan, np.float32), r"holds float32 values in \[nan, nan\]"),
        ((GREY16.astype(np.int32) - 30_000).astype(np.int16), r"holds negative int16 values \(down to -"),
    ],
)
def test_values_that_do_not_map_to_the_unit_range_are_one_line(tmp_path, array, message):
    tifffile.imwrite(tmp_path / "bad.tif", array)
    with pytest.raises(SpadeInputError, match=message) as err:
        read_image(tmp_path / "bad.tif", 1)
    assert "bad.tif" in str(err.value) and "\n" not in str(err.value)
