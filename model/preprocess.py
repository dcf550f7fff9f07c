"""The one preprocessing function: encoded image bytes -> the network's 48x48x1 input.

Training (`trainer/`) and labelling (`pipeline/`) both call `preprocess_image`, so what the model saw while it
learned is exactly what it sees when it labels: there is no second implementation that could drift.

The rule, in order:
1. Decode with Pillow: JPEG (also CMYK, progressive, and MPO: the multi-picture JPEG phones and cameras write,
   read as its first picture), PNG, BMP, GIF, WebP, TIFF, HEIC/HEIF (`pillow-heif`), AVIF, JPEG 2000, PNM,
   TGA. Multi-frame files (animated GIF, multi-page TIFF) use their first frame.
2. JPEGs (MPO included) are decoded at a reduced scale (Pillow's `draft`, DCT scaling) when they are much larger
   than needed, so a 48-megapixel photo costs about as much as a 0.75-megapixel one.
3. Before any pixel is decoded, the memory decoding and converting would take is estimated
   (`model.image_formats.decode_memory_bytes`); over `MAX_DECODE_BYTES` the file is refused as "image too
   large", whatever its pixel count.
4. The EXIF orientation tag is applied, so a phone photo is upright.
5. Converted to 8-bit by value range: 16-bit samples scaled by 255/65535; 32-bit integer and float samples by
   the range they use (floats 0-1 or 0-255, integers 0-255, 0-65535 or 0-2^31-1; negative or non-finite values
   are refused as "unsupported"); colour spaces (CMYK, Lab, YCbCr, HSV) to RGB; then greyscale with ITU-R
   601-2 luma (Pillow's "L"), transparency flattened onto a white background.
6. Centre-cropped to a square (the shorter side) and resized to 48x48 with a Lanczos filter.
7. Stretched to the full grey range (darkest pixel 0, brightest 255), as every FER2013 face the network learned
   from is (`full_grey_range`). A 48x48 input that spans the range already, such as a FER2013 face, passes
   through unchanged.

A file that cannot be read gets a reason: "not a recognised image format", "unsupported: ..." (a real image of
a kind, variant or value range that is not read) or "corrupt or truncated image: ...".
The result is float32 with pixel values 0..255; scaling to the network's range happens inside the network.
This is the whole-image rule (training's input, and `--faces none`); finding and aligning faces in photos is in
`model.faces` and `model.align`, which decode with `decode_image` and take face-sized images whole with
`whole_image_input`.
"""

import dataclasses
import io

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from model.contract import CHANNELS, IMAGE_SIZE
from model.image_formats import (MAX_DECODE_BYTES, ImageDecodeError, check_decode_memory, classify_failure,
                                 declared_sample_bits, load_failure_reason, unidentified_reason)

__all__ = ["MAX_DECODE_BYTES", "DecodedImage", "ImageDecodeError", "decode_image", "full_grey_range", "is_flat",
           "preprocess_image"]

# Largest 8-bit value, and the full scale of 16-bit and signed 32-bit integer samples.
EIGHT_BIT_MAX: float = 255.0
SIXTEEN_BIT_MAX: float = 65535.0
THIRTY_TWO_BIT_MAX: float = 2.0 ** 31 - 1
# Float samples up to this are read as 0-1 (the common convention of scientific and ML tools), else 0-255.
FLOAT_UNIT_MAX: float = 1.0
# Added before Pillow's truncating float -> 8-bit conversion, so it rounds to nearest.
ROUND_HALF: float = 0.5
# Background that transparent pixels are flattened onto.
BACKGROUND_GREY: int = 255
RESIZE_FILTER = Image.Resampling.LANCZOS
# Every face the network learned from spans the full grey range: 28,691 of the 28,709 FER2013 training faces here
# have exactly 0 as their darkest and 255 as their brightest pixel (9 are all black, 9 run from 1 to 255), while
# faces in photos and crops from elsewhere rarely do (muxspace's photos taken whole: median darkest 8, brightest
# 224). So every input is stretched to that range (trainer/RESULTS.md, "Faces found in photos stretched to the full
# grey range"). An input already within this many grey levels of both ends is left as it is: stretching it would
# only re-round its greys, and would change those 9 training faces (so training is fed exactly the faces it was fed
# before the stretch).
FULL_RANGE_TOLERANCE: int = 1
# Standard deviation of grey values (0..255) under which an image is flat (blank, a single colour): not stretched
# (that would turn a blank frame's JPEG noise into full-contrast texture), and never a face found (model.align).
FLAT_MAX_STD: float = 4.0
# What summary.json records as the runs' grey range (`--incremental` relabels rows from runs before the stretch,
# 2026-12-02, which recorded none: greys as decoded).
GREY_RANGE: str = "full"
GREY_RANGE_BEFORE: str = "as decoded"
# EXIF tag 0x0112 (Orientation), and its values 5-8 that swap width and height (EXIF 2.32, section 4.6.4).
EXIF_ORIENTATION_TAG: int = 0x0112
EXIF_TRANSPOSED_ORIENTATIONS: frozenset[int] = frozenset({5, 6, 7, 8})
# Modes converted straight to RGB by Pillow (colour spaces), and modes that carry an alpha channel.
COLOUR_SPACE_MODES: frozenset[str] = frozenset({"CMYK", "LAB", "YCbCr", "HSV", "RGBX"})
ALPHA_MODES: dict[str, str] = {"RGBA": "RGBA", "RGBa": "RGBA", "LA": "LA", "La": "LA", "PA": "RGBA"}
# Pillow's messages for damaged data at load time (the rest say what cannot be decoded).
LOAD_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError)


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    """An image decoded upright, possibly at reduced scale.

    image: 8-bit greyscale ("L") or colour ("RGB") Pillow image, EXIF orientation applied.
    original_size: (width, height) in pixels of the full-resolution upright image, so positions found on the
        reduced image can be reported in the coordinates a user sees in a photo viewer.
    """

    image: Image.Image
    original_size: tuple[int, int]

    @property
    def scale(self) -> float:
        """original pixels per decoded pixel (>= 1 when decoded at reduced scale)."""
        return self.original_size[0] / self.image.size[0]


def decode_image(data: bytes, min_side: int = IMAGE_SIZE, colour: bool = False) -> DecodedImage:
    """Decode encoded image bytes upright, as 8-bit greyscale ("L"), or "RGB" when colour is True.

    JPEGs (MPO included) are decoded at the smallest DCT scale whose shorter side is still at least min_side
    pixels (or at full size if smaller), so a large photo costs little. Raises ImageDecodeError with a short
    reason for anything that is not a usable image: "empty file (0 bytes)", "not a recognised image format",
    "unsupported: ...", "image too large: ..." (over MAX_DECODE_BYTES) or "corrupt or truncated image: ...".
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError(unidentified_reason(data)) from None
    except Image.DecompressionBombError as err:  # a plugin's own limit (e.g. libheif's)
        raise ImageDecodeError(f"image too large: {err}") from None
    except LOAD_ERRORS as err:
        raise ImageDecodeError(classify_failure(str(err) or type(err).__name__)) from None
    try:
        full_size = image.size
        if isinstance(image, JpegImagePlugin.JpegImageFile):  # JPEG and MPO
            # Ask the JPEG decoder for the smallest DCT scale that still covers the requested size.
            image.draft("RGB" if colour else "L", (min_side, min_side))
        check_decode_memory(image, full_size, colour)
        bits = declared_sample_bits(image)
        orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
        image = ImageOps.exif_transpose(image)
        if orientation in EXIF_TRANSPOSED_ORIENTATIONS:
            full_size = full_size[::-1]
        converted = _to_rgb(image, bits) if colour else _to_greyscale(image, bits)
        converted.load()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(f"image too large: {err}") from None
    except MemoryError:
        raise ImageDecodeError("image too large: out of memory while decoding") from None
    except LOAD_ERRORS as err:
        # Pillow reports damaged data as OSError/SyntaxError/ValueError/EOFError, and kinds it cannot decode
        # in words ("unsupported", "not available") that classify_failure looks for.
        raise ImageDecodeError(load_failure_reason(data, err)) from None
    return DecodedImage(converted, full_size)


def preprocess_image(data: bytes) -> np.ndarray:
    """Decode encoded image bytes into the model input: float32 array of shape (48, 48, 1), values 0..255.

    The whole image is the face (centre square, resized): for inputs that are already face crops.
    Raises ImageDecodeError with a short human-readable reason for anything that is not a usable image.
    """
    return whole_image_input(decode_image(data).image)


def whole_image_input(image: Image.Image) -> np.ndarray:
    """A decoded image (any mode) taken whole as the face: greyscale (Pillow's "L"), centre square, resized to
    48x48 with RESIZE_FILTER, stretched by full_grey_range. Returns float32 (48, 48, 1), values 0..255."""
    grey = image if image.mode == "L" else image.convert("L")
    face = ImageOps.fit(grey, (IMAGE_SIZE, IMAGE_SIZE), method=RESIZE_FILTER, centering=(0.5, 0.5))
    return np.asarray(full_grey_range(face), dtype=np.float32).reshape(IMAGE_SIZE, IMAGE_SIZE, CHANNELS)


def full_grey_range(face: Image.Image) -> Image.Image:
    """An 8-bit greyscale ("L") face stretched linearly so that its darkest pixel is 0 and its brightest 255
    (Pillow's `ImageOps.autocontrast`, no cut-off), as the training faces are; returned as it is when it already
    reaches within FULL_RANGE_TOLERANCE grey levels of both ends, or is flat (`is_flat`: nothing to stretch but
    noise)."""
    darkest, brightest = face.getextrema()
    if (darkest <= FULL_RANGE_TOLERANCE and brightest >= EIGHT_BIT_MAX - FULL_RANGE_TOLERANCE) or is_flat(face):
        return face
    return ImageOps.autocontrast(face)


def is_flat(image: Image.Image) -> bool:
    """Whether an image is (nearly) one grey: standard deviation of its 0..255 luma under FLAT_MAX_STD."""
    grey = image if image.mode == "L" else image.convert("L")
    return float(np.asarray(grey, dtype=np.float32).std()) < FLAT_MAX_STD


def _to_rgb(image: Image.Image, sample_bits: int | None = None) -> Image.Image:
    """Convert any Pillow mode to 8-bit "RGB": greyscale modes by the greyscale rule, repeated in three channels;
    colour spaces by Pillow; transparency flattened onto the same white background. sample_bits: the file's
    declared bits per sample when fewer than its mode holds (12-bit TIFF read as 16-bit), else None."""
    image = _eight_bit(image, sample_bits)
    if image.mode in ("L", "LA"):
        return _to_greyscale(image).convert("RGB")
    if image.mode == "RGBA":
        return _flatten(image.convert("RGB"), image.getchannel("A"))
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_greyscale(image: Image.Image, sample_bits: int | None = None) -> Image.Image:
    """Convert any Pillow mode to 8-bit greyscale ("L") by the rule in the module docstring (sample_bits as for
    _to_rgb)."""
    image = _eight_bit(image, sample_bits)
    if image.mode in ("LA", "RGBA"):
        return _flatten(image.convert("L"), image.getchannel("A"))
    return image if image.mode == "L" else image.convert("L")


def _flatten(image: Image.Image, alpha: Image.Image) -> Image.Image:
    """image ("L" or "RGB") composited over the white background with the given alpha channel."""
    background = Image.new(image.mode, image.size, (BACKGROUND_GREY,) * len(image.getbands()))
    return Image.composite(image, background, alpha)


def _eight_bit(image: Image.Image, sample_bits: int | None = None) -> Image.Image:
    """Any Pillow mode as one of "L", "LA", "RGB", "RGBA" with 8-bit samples, read by its value range.

    Raises ImageDecodeError("unsupported: ...") for samples whose range is not known (negative, not finite) and
    for modes Pillow has but no camera, phone, scanner or editor writes.
    """
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode in ALPHA_MODES:
        return image.convert(ALPHA_MODES[mode])
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in COLOUR_SPACE_MODES:
        return image.convert("RGB")
    if mode == "F" or mode.startswith("I"):
        return _scaled_to_eight_bit(image, sample_bits)
    raise ImageDecodeError(f"unsupported: pixel mode {mode}")


def _scaled_to_eight_bit(image: Image.Image, sample_bits: int | None) -> Image.Image:
    """A 16-bit, 32-bit integer or float greyscale image as 8-bit "L", scaled by the range its values use
    (16-bit modes: by the declared sample_bits, e.g. 12, when the file states fewer than 16)."""
    as_float = image if image.mode == "F" else image.convert("F")
    low, high = as_float.getextrema()
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ImageDecodeError(f"unsupported: {image.mode} samples that are not finite numbers")
    if low < 0:
        raise ImageDecodeError(f"unsupported: {image.mode} samples from {low:g} to {high:g} (negative values have "
                               f"no known brightness)")
    if image.mode.startswith("I;16"):
        full_scale = float(2 ** sample_bits - 1) if sample_bits and sample_bits < 16 else SIXTEEN_BIT_MAX
    elif image.mode == "F":
        full_scale = FLOAT_UNIT_MAX if high <= FLOAT_UNIT_MAX else EIGHT_BIT_MAX if high <= EIGHT_BIT_MAX else None
    else:  # 32-bit integers: the smallest of the usual sample ranges that holds every value
        full_scale = next(limit for limit in (EIGHT_BIT_MAX, SIXTEEN_BIT_MAX, THIRTY_TWO_BIT_MAX) if high <= limit)
    if full_scale is None:
        raise ImageDecodeError(f"unsupported: float samples up to {high:g} (known ranges: 0-1 and 0-255)")
    scale = EIGHT_BIT_MAX / full_scale
    return as_float.point(lambda value: value * scale + ROUND_HALF).convert("L")
