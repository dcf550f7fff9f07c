"""The shared preprocessing over the formats and modes people really have, all made here with Pillow."""

import io
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import encode, synthetic_face
from model.contract import INPUT_SHAPE
from model.preprocess import FULL_RANGE_TOLERANCE, ImageDecodeError, preprocess_image

GREY = 128
# Lossy formats and resampling move values a little; lossless ones must be exact.
LOSSY_TOLERANCE = 6


def test_48x48_greyscale_passes_through_unchanged():
    """A 48x48 face that spans the full grey range, as every FER2013 face does, is the network input as it is."""
    face = ImageOps.autocontrast(synthetic_face(bright=True, seed=1))
    assert face.getextrema() == (0, 255)
    out = preprocess_image(encode(face, "PNG"))
    assert out.shape == INPUT_SHAPE and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], np.asarray(face, np.float32))


def test_a_dim_crop_is_stretched_to_the_full_grey_range():
    """Greys 60..120 become 0..255 without reordering; a face already within FULL_RANGE_TOLERANCE of both ends
    (9 FER2013 faces run from 1 to 255) and a flat frame with a little noise are left as they are."""
    dim = Image.fromarray(np.tile(np.linspace(60, 120, 48), (48, 1)).astype(np.uint8))
    out = preprocess_image(encode(dim, "PNG"))[..., 0]
    assert out.min() == 0 and out.max() == 255 and (np.diff(out, axis=1) >= 0).all()
    nearly = np.asarray(ImageOps.autocontrast(synthetic_face(bright=False, seed=2)), np.uint8).copy()
    nearly[nearly == 0] = FULL_RANGE_TOLERANCE
    np.testing.assert_array_equal(preprocess_image(encode(Image.fromarray(nearly), "PNG"))[..., 0], nearly)
    noisy_grey = np.random.default_rng(3).integers(88, 93, (48, 48)).astype(np.uint8)  # a blank frame's noise
    np.testing.assert_array_equal(preprocess_image(encode(Image.fromarray(noisy_grey), "PNG"))[..., 0], noisy_grey)


@pytest.mark.parametrize("fmt,save_args", [
    ("JPEG", {"quality": 95}),
    ("JPEG", {"quality": 95, "progressive": True}),
    ("PNG", {}),
    ("BMP", {}),
    ("WEBP", {"lossless": True}),
    ("TIFF", {}),
    ("GIF", {}),
])
def test_colour_formats_become_luma(fmt, save_args):
    # A flat colour: luma = 0.299 R + 0.587 G + 0.114 B.
    colour = (200, 100, 50)
    expected = 0.299 * 200 + 0.587 * 100 + 0.114 * 50
    out = preprocess_image(encode(Image.new("RGB", (60, 60), colour), fmt, **save_args))
    assert out.shape == INPUT_SHAPE
    tolerance = LOSSY_TOLERANCE if fmt in ("JPEG", "GIF") else 1
    assert np.abs(out - expected).max() <= tolerance


def test_cmyk_jpeg():
    black = Image.new("CMYK", (50, 50), (0, 0, 0, 255))
    white = Image.new("CMYK", (50, 50), (0, 0, 0, 0))
    assert preprocess_image(encode(black, "JPEG")).max() <= LOSSY_TOLERANCE
    assert preprocess_image(encode(white, "JPEG")).min() >= 255 - LOSSY_TOLERANCE


def test_sixteen_bit_png_is_scaled_not_clipped():
    samples = np.full((48, 48), GREY * 257, dtype=np.uint16)
    data = encode(Image.fromarray(samples), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    np.testing.assert_allclose(preprocess_image(data), GREY, atol=0.5)


def test_transparency_is_flattened_onto_white():
    rgba = Image.new("RGBA", (48, 48), (0, 0, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 24, 48))  # left half fully transparent
    out = preprocess_image(encode(rgba, "PNG"))[..., 0]
    assert out[:, :20].min() == 255 and out[:, 28:].max() == 0


def test_palette_with_transparency():
    palette_image = Image.new("P", (48, 48), 1)
    palette_image.putpalette([255, 0, 0, 0, 0, 0] + [0] * 762)
    palette_image.paste(0, (0, 0, 48, 24))  # top half uses the transparent index 0
    out = preprocess_image(encode(palette_image, "PNG", transparency=0))[..., 0]
    assert out[:20].min() == 255 and out[28:].max() == 0


def test_grey_with_alpha():
    la = Image.new("LA", (48, 48), (0, 0))
    assert preprocess_image(encode(la, "PNG")).min() == 255


def test_animated_gif_uses_first_frame():
    frames = [Image.new("L", (48, 48), 250), Image.new("L", (48, 48), 5)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert preprocess_image(data).min() >= 240


def test_exif_orientation_is_applied():
    # Stored upside down (top black, bottom white) with orientation 3 = "rotate 180 to display".
    stored = Image.new("L", (48, 48), 255)
    stored.paste(0, (0, 0, 48, 24))
    exif = Image.Exif()
    exif[0x0112] = 3
    out = preprocess_image(encode(stored, "JPEG", exif=exif, quality=95))[..., 0]
    assert out[:20].mean() > 240 and out[28:].mean() < 15


def test_non_square_is_centre_cropped():
    # 144x48: black | white | black thirds; the centre square is the white third.
    wide = Image.new("L", (144, 48), 0)
    wide.paste(255, (48, 0, 96, 48))
    out = preprocess_image(encode(wide, "PNG"))[..., 0]
    assert out[:, 4:44].min() >= 250


def test_large_jpeg_is_decoded_and_resized():
    big = Image.new("RGB", (6000, 4000), (90, 90, 90))
    out = preprocess_image(encode(big, "JPEG", quality=85))
    assert out.shape == INPUT_SHAPE
    assert np.abs(out - 90).max() <= LOSSY_TOLERANCE


def test_oversized_non_jpeg_is_refused():
    # A PNG whose header claims 60000x60000 pixels: refused from the header, before any pixel is decoded.
    data = bytearray(encode(Image.new("1", (8, 8), 0), "PNG"))
    data[16:24] = (60_000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    with pytest.raises(ImageDecodeError, match="image too large"):
        preprocess_image(bytes(data))


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (b"this is not an image at all", "not a recognised image format"),
])
def test_undecodable_input_raises_clear_error(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        preprocess_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_raises_clear_error(fmt):
    data = encode(synthetic_face(bright=True, seed=3, size=200), fmt)
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        preprocess_image(data[: len(data) // 2])
