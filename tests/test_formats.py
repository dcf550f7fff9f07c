"""Every image kind and pixel mode that cameras, phones, scanners, browsers and editors write, made here with
Pillow (or by hand where Pillow cannot write them), decoded to the right greyscale and RGB values; files that
cannot be read get "unsupported: ..." or "corrupt or truncated image: ..." as the case is."""

import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import encode, synthetic_face
from model.contract import is_image_path
from model.image_formats import decode_memory_bytes
from model.preprocess import ImageDecodeError, decode_image, preprocess_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COLOUR = (200, 100, 50)
LUMA = 0.299 * 200 + 0.587 * 100 + 0.114 * 50  # 121.4
LOSSLESS, LOSSY = 1, 8
SIDE = 64
CHEAP_BYTES = 32 * 1024 * 1024


def flat(mode: str, value) -> Image.Image:
    return Image.new(mode, (SIDE, SIDE), value)


def decoded(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(greyscale, RGB) pixels of the decoded image, checking the modes the face detector and model rely on."""
    grey, rgb = decode_image(data), decode_image(data, colour=True)
    assert grey.image.mode == "L" and rgb.image.mode == "RGB"
    return np.asarray(grey.image, np.float64), np.asarray(rgb.image, np.float64)


@pytest.mark.parametrize("fmt,save_args,tolerance", [
    ("JPEG", {"quality": 95}, LOSSY),
    ("JPEG", {"quality": 95, "progressive": True}, LOSSY),
    ("MPO", {"quality": 95, "save_all": True, "append_images": [flat("RGB", (0, 0, 0))]}, LOSSY),
    ("PNG", {}, LOSSLESS),
    ("BMP", {}, LOSSLESS),
    ("GIF", {}, LOSSY),
    ("WEBP", {"lossless": True}, LOSSLESS),
    ("WEBP", {"quality": 90}, LOSSY),
    ("TIFF", {}, LOSSLESS),
    ("TIFF", {"compression": "tiff_lzw"}, LOSSLESS),
    ("TIFF", {"compression": "tiff_adobe_deflate"}, LOSSLESS),
    ("TIFF", {"compression": "jpeg"}, LOSSY),  # stored as YCbCr, as scanners and cameras write it
    ("HEIF", {"quality": 95}, LOSSY),
    ("AVIF", {"quality": 95}, LOSSY),
    ("JPEG2000", {}, LOSSY),
    ("PPM", {}, LOSSLESS),
    ("TGA", {}, LOSSLESS),
])
def test_every_format_gives_luma_and_rgb(fmt, save_args, tolerance):
    grey, rgb = decoded(encode(flat("RGB", COLOUR), fmt, **save_args))
    assert np.abs(grey - LUMA).max() <= tolerance
    assert np.abs(rgb - np.array(COLOUR)).max() <= tolerance * 2  # chroma is coarser than luma in lossy kinds


@pytest.mark.parametrize("name", ["a.jfif", "b.JFIF", "c.heic", "d.HEIF", "e.avif", "f.hif", "g.jp2", "h.mpo",
                                  "i.pgm", "j.tga", "k.jif"])
def test_phone_browser_and_scanner_extensions_are_images(name):
    assert is_image_path(name)


def png_16_bit_rgb(value: tuple[int, int, int]) -> bytes:
    """A 48-bit RGB PNG (what raw converters and editors export), written by hand: Pillow cannot write one."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    row = b"\x00" + struct.pack(">HHH", *value) * SIDE
    header = struct.pack(">IIBBBBB", SIDE, SIDE, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * SIDE))
            + chunk(b"IEND", b""))


def tiff_by_hand(samples: int, bits: int, sample_format: int, pixel: bytes) -> bytes:
    """A 1x1 uncompressed little-endian TIFF with the given layout, for variants Pillow cannot write."""
    entries = [(256, 3, 1, 1), (257, 3, 1, 1), (259, 3, 1, 1), (262, 3, 1, 2 if samples >= 3 else 1),
               (277, 3, 1, samples), (278, 3, 1, 1), (279, 4, 1, len(pixel)), (284, 3, 1, 1)]
    extra_at = 8 + 2 + 12 * (len(entries) + 3) + 4
    bits_values = struct.pack("<" + "H" * samples, *[bits] * samples)
    format_values = struct.pack("<" + "H" * samples, *[sample_format] * samples)
    pixel_at = extra_at + len(bits_values) + len(format_values)
    if samples > 2:
        entries += [(258, 3, samples, extra_at), (339, 3, samples, extra_at + len(bits_values))]
    else:
        entries += [(258, 3, 1, bits), (339, 3, 1, sample_format)]
    entries += [(273, 4, 1, pixel_at)]
    entries.sort()
    body = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0" * 4
    body = body.ljust(extra_at - 8, b"\0")
    return b"II*\x00" + struct.pack("<I", 8) + body + bits_values + format_values + pixel


GREY_128 = 128


@pytest.mark.parametrize("make_data,expected", [
    # floats by value range: 0-1 (scientific and ML tools) and 0-255
    (lambda: encode(Image.fromarray(np.full((SIDE, SIDE), 0.5, np.float32), "F"), "TIFF"), GREY_128),
    (lambda: encode(Image.fromarray(np.full((SIDE, SIDE), 128.0, np.float32), "F"), "TIFF"), GREY_128),
    (lambda: encode(Image.fromarray(np.full((SIDE, SIDE), 0.5, np.float32), "F"), "PPM"), GREY_128),  # PFM
    # 16-bit greyscale from PNG, TIFF (both byte orders), JPEG 2000, PGM and 10-bit HEIF
    (lambda: encode(Image.fromarray(np.full((SIDE, SIDE), GREY_128 * 257, np.uint16)), "PNG"), GREY_128),
    (lambda: encode(Image.fromarray(np.full((SIDE, SIDE), GREY_128 * 257, np.uint16)), "TIFF"), GREY_128),
    (lambda: encode(Image.fromarray(np.full((SIDE, SIDE), GREY_128 * 257, ">u2")), "TIFF"), GREY_128),
    (lambda: encode(Image.fromarray(np.full((SIDE, SIDE), GREY_128 * 257, np.uint16)), "JPEG2000"), GREY_128),
    (lambda: encode(Image.fromarray(np.full((SIDE, SIDE), GREY_128 * 257, np.uint16)), "PPM"), GREY_128),
    (lambda: encode(Image.fromarray(np.full((SIDE, SIDE), GREY_128 * 257, np.uint16)), "HEIF"), GREY_128),
    # 32-bit integers by the range their values use
    (lambda: encode(Image.fromarray(np.full((SIDE, SIDE), GREY_128, np.int32), "I"), "TIFF"), GREY_128),
    (lambda: encode(Image.fromarray(np.full((SIDE, SIDE), GREY_128 * 257, np.int32), "I"), "TIFF"), GREY_128),
    (lambda: encode(Image.fromarray(np.full((SIDE, SIDE), 2 ** 30, np.int32), "I"), "TIFF"), GREY_128),
    # 12-bit TIFF (scanners, machine vision; samples packed MSB first): read as 16-bit, scaled by the declared bits
    (lambda: tiff_by_hand(1, 12, 1, struct.pack(">H", 2048 << 4)), GREY_128),
    (lambda: tiff_by_hand(1, 12, 1, struct.pack(">H", 4095 << 4)), 255),
    # 48-bit RGB PNG
    (lambda: png_16_bit_rgb((GREY_128 * 257,) * 3), GREY_128),
    # bilevel (fax and document scanners), palette, grey with alpha
    (lambda: encode(flat("1", 1), "TIFF", compression="group4"), 255),
    (lambda: encode(flat("1", 0), "PNG"), 0),
    (lambda: encode(flat("1", 1), "BMP"), 255),
    (lambda: encode(flat("RGB", (GREY_128,) * 3).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), GREY_128),
    (lambda: encode(flat("RGB", (GREY_128,) * 3).convert("P", palette=Image.Palette.ADAPTIVE), "TIFF"), GREY_128),
    (lambda: encode(flat("LA", (GREY_128, 255)), "TIFF"), GREY_128),
    (lambda: encode(flat("PA", (0, 0)), "TIFF"), 255),  # fully transparent: the white background
    (lambda: encode(flat("RGBA", (0, 0, 0, 0)), "WEBP", lossless=True), 255),
    (lambda: encode(flat("RGBA", (GREY_128, GREY_128, GREY_128, 255)), "HEIF", quality=100), GREY_128),
    # colour spaces: CMYK (print, Photoshop), Lab (TIFF from editors)
    (lambda: encode(flat("CMYK", (0, 0, 0, 255 - GREY_128)), "TIFF"), GREY_128),
    (lambda: encode(flat("CMYK", (0, 0, 0, 255 - GREY_128)), "JPEG", quality=95), GREY_128),
    (lambda: encode(flat("CMYK", (0, 0, 0, 255 - GREY_128)), "JPEG2000"), GREY_128),
    (lambda: encode(flat("LAB", (255, 128, 128)), "TIFF"), 255),
])
def test_modes_are_read_by_value_range(make_data, expected):
    grey, rgb = decoded(make_data())
    tolerance = 3
    assert np.abs(grey - expected).max() <= tolerance, (grey.min(), grey.max())
    assert np.abs(rgb - expected).max() <= tolerance, (rgb.min(), rgb.max())


@pytest.mark.parametrize("mode,value,expected_rgb", [
    ("YCbCr", (GREY_128, 128, 128), (GREY_128,) * 3),
    ("HSV", (0, 255, 255), (255, 0, 0)),
    ("RGBX", (10, 20, 30, 0), (10, 20, 30)),
    ("RGBa", (0, 0, 0, 0), (255, 255, 255)),
    ("La", (0, 0), (255, 255, 255)),
    ("I;16B", GREY_128 * 257, (GREY_128,) * 3),
])
def test_in_memory_modes_convert_to_grey_and_rgb(mode, value, expected_rgb):
    from model.preprocess import _to_greyscale, _to_rgb

    image = flat(mode, value)
    rgb, grey = _to_rgb(image), _to_greyscale(image)
    assert rgb.mode == "RGB" and grey.mode == "L"
    assert np.abs(np.asarray(rgb, np.float64) - expected_rgb).max() <= 1
    expected_grey = 0.299 * expected_rgb[0] + 0.587 * expected_rgb[1] + 0.114 * expected_rgb[2]
    assert abs(float(np.asarray(grey).mean()) - expected_grey) <= 1


def test_float_tiff_face_is_read_like_the_8bit_png():
    face = synthetic_face(bright=False, seed=7)
    as_float = Image.fromarray(np.asarray(face, np.float32) / 255.0, "F")
    np.testing.assert_allclose(preprocess_image(encode(as_float, "TIFF")), preprocess_image(encode(face, "PNG")),
                               atol=1)


@pytest.mark.parametrize("values,reason", [
    (np.linspace(-1, 1, SIDE * SIDE), "unsupported: F samples from -1 to 1"),
    (np.full(SIDE * SIDE, np.nan), "unsupported: F samples that are not finite"),
    (np.linspace(0, 4000, SIDE * SIDE), "unsupported: float samples up to 4000"),
])
def test_float_values_of_unknown_range_are_refused_not_labelled(values, reason):
    data = encode(Image.fromarray(values.reshape(SIDE, SIDE).astype(np.float32), "F"), "TIFF")
    with pytest.raises(ImageDecodeError, match=reason):
        preprocess_image(data)


def test_negative_integer_samples_are_refused():
    data = encode(Image.fromarray(np.full((SIDE, SIDE), -5, np.int32), "I"), "TIFF")
    with pytest.raises(ImageDecodeError, match="unsupported: I samples from -5"):
        preprocess_image(data)


@pytest.mark.parametrize("data,reason", [
    (tiff_by_hand(3, 32, 3, b"\0" * 12), "unsupported: TIFF"),  # 32-bit float RGB
    (tiff_by_hand(1, 24, 1, b"\0\0\0"), "unsupported: TIFF"),  # 24-bit greyscale
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n" + b"\0" * 64, "unsupported: JPEG XL"),
    (b"\xff\x0a" + b"\0" * 64, "unsupported: JPEG XL"),
])
def test_valid_files_of_unsupported_kinds_are_not_called_corrupt(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        preprocess_image(data)


@pytest.mark.parametrize("fmt,save_args", [
    ("JPEG", {"progressive": True}), ("PNG", {}), ("GIF", {}), ("TIFF", {}), ("WEBP", {}), ("HEIF", {}),
    ("AVIF", {}), ("BMP", {}), ("JPEG2000", {}),
])
def test_truncated_files_are_corrupt_or_truncated(fmt, save_args):
    noise = np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), fmt, **save_args)
    with pytest.raises(ImageDecodeError, match="corrupt or truncated image"):
        preprocess_image(data[: len(data) * 2 // 3])


# (4 bytes of a GIF do not reach the end of its signature: "not a recognised image format", tested elsewhere.)
@pytest.mark.parametrize("fmt,length", [("JPEG", 4), ("JPEG", 20), ("JPEG", 40), ("TIFF", 4), ("TIFF", 20),
                                        ("TIFF", 40), ("GIF", 20), ("GIF", 40), ("GIF", 100), ("GIF", 700)])
def test_files_cut_to_a_few_bytes_are_truncated_not_unsupported(fmt, length):
    """A header cut short made Pillow's plugins fail in ways that read like an unknown variant ('unpack requires a
    buffer', 'Missing dimensions', 'no more images in GIF file')."""
    noise = np.random.default_rng(2).integers(0, 255, (60, 60, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), fmt)[:length]
    with pytest.raises(ImageDecodeError, match="corrupt or truncated image"):
        preprocess_image(data)


def test_a_damaged_tiff_prints_no_pillow_warning(tmp_path):
    """Pillow's TIFF reader warned 'Corrupt EXIF data' on the console, without the file's name (its reason is in
    errors.csv). Checked in a fresh interpreter: pytest resets warning filters set while it imports modules."""
    noise = np.random.default_rng(3).integers(0, 255, (60, 60, 3), dtype=np.uint8)
    damaged = tmp_path / "cut.tif"
    damaged.write_bytes(encode(Image.fromarray(noise), "TIFF")[:20])
    script = ("import sys\nfrom model.preprocess import ImageDecodeError, preprocess_image\n"
              "try:\n    preprocess_image(open(sys.argv[1], 'rb').read())\n"
              "except ImageDecodeError as err:\n    print(err)\n")
    done = subprocess.run([sys.executable, "-c", script, str(damaged)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.startswith("corrupt or truncated image: TIFF file of 20 bytes"), done.stdout + done.stderr
    assert done.stderr == ""


def patched_jpeg_size(progressive: bool, width: int, height: int) -> bytes:
    """A JPEG whose frame header claims width x height pixels (no pixel data for them): a crafted file."""
    data = bytearray(encode(flat("RGB", COLOUR), "JPEG", progressive=progressive))
    marker = data.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[marker + 5:marker + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_crafted_progressive_jpeg_is_refused_by_its_decoding_memory():
    # 30000x30000 progressive: libjpeg would hold every DCT coefficient, about 2.6 GB, whatever the scale.
    with pytest.raises(ImageDecodeError, match=r"image too large: decoding \d+x\d+ pixels of a 30000x30000 image "
                                               r"\(JPEG \w+\) .* over the limit of 512 MB"):
        preprocess_image(patched_jpeg_size(True, 30_000, 30_000))


def test_crafted_huge_baseline_jpeg_is_not_refused_for_its_pixel_count():
    # The same claim as a baseline JPEG decodes at 1/8 scale, cheaply: its pixel count alone is no reason.
    result = decode_image(patched_jpeg_size(False, 30_000, 30_000))
    assert result.original_size == (30_000, 30_000) and result.scale == 8


def test_crafted_gif_header_is_refused_before_decoding():
    data = bytearray(encode(flat("L", 9), "GIF"))
    data[6:10] = struct.pack("<HH", 65_535, 65_535)
    with pytest.raises(ImageDecodeError, match="image too large"):
        preprocess_image(bytes(data))


def test_48_megapixel_mpo_is_decoded_at_reduced_scale_like_the_plain_jpeg():
    photo = Image.new("RGB", (8064, 6048), COLOUR)
    mpo = encode(photo, "MPO", quality=90, save_all=True, append_images=[flat("RGB", (0, 0, 0))])
    jpeg = encode(photo, "JPEG", quality=90)
    del photo
    assert Image.open(io.BytesIO(mpo)).format == "MPO"
    as_mpo, as_jpeg = decode_image(mpo), decode_image(jpeg)
    assert as_mpo.original_size == (8064, 6048) and as_mpo.scale == 8 == as_jpeg.scale
    np.testing.assert_array_equal(preprocess_image(mpo), preprocess_image(jpeg))
    opened = Image.open(io.BytesIO(mpo))
    opened.draft("L", (48, 48))
    assert decode_memory_bytes(opened, (8064, 6048), colour=False) < CHEAP_BYTES  # a 48 MP PNG: over 400 MB


@pytest.mark.parametrize("case,colour", [("png-rgba", True), ("webp", False), ("progressive444", False),
                                         ("tiff-float", True)])
def test_memory_estimate_bounds_what_decoding_really_uses(tmp_path, case, colour):
    # Measured in a fresh process from the kernel's peak resident size (bench/decode_memory.py), at 8 MP, where
    # the per-pixel costs dominate the estimate's fixed part. (HEIF/AVIF: measured by the bench; encoding them at
    # this size is too slow for the suite.)
    from bench.decode_memory import measure

    row = measure(case, 8.0, colour, tmp_path)
    assert row["outcome"].count("x") == 1, row
    assert row["measured_mb"] <= row["estimate_mb"], row
