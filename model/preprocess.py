"""The one preprocessing function: encoded image bytes -> the network's 48x48x1 input.

Training (`trainer/`) and labelling (`pipeline/`) both call `preprocess_image`, so what the model saw while it
learned is exactly what it sees when it labels: there is no second implementation that could drift.

The rule, in order:
1. Decode with Pillow (JPEG incl. CMYK and progressive, PNG incl. 16-bit/alpha/palette, BMP, GIF, WebP, TIFF).
   Multi-frame files (animated GIF, multi-page TIFF) use their first frame.
2. JPEGs are decoded at a reduced scale (Pillow's `draft`, DCT scaling) when they are much larger than needed,
   so a 6000x4000 photo costs about as much as a 750x500 one.
3. Images still over `MAX_DECODED_PIXELS` after that are refused (decompression-bomb guard).
4. The EXIF orientation tag is applied, so a phone photo is upright.
5. Converted to 8-bit greyscale: colour with ITU-R 601-2 luma (Pillow's "L"), 16-bit samples scaled by 1/257,
   transparency flattened onto a white background.
6. Centre-cropped to a square (the shorter side) and resized to 48x48 with a Lanczos filter. A 48x48 input,
   such as a FER2013 face, passes through unchanged.

The result is float32 with pixel values 0..255; scaling to the network's range happens inside the network.
Faces are not detected: the input should already be a face crop, as FER2013's are.
"""

import dataclasses
import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model.contract import CHANNELS, IMAGE_SIZE

# Largest image (width x height, after JPEG draft reduction) that is decoded; bigger ones are refused
# so a crafted or huge file cannot exhaust a worker's memory. 40 MP of RGBA is 160 MB.
MAX_DECODED_PIXELS: int = 40_000_000
# Pillow refuses files whose header claims more than twice this many pixels before reading any pixel data.
Image.MAX_IMAGE_PIXELS = MAX_DECODED_PIXELS
# Scale factor from 16-bit samples (0..65535) to 8-bit (0..255).
SIXTEEN_TO_EIGHT_BIT: float = 65535.0 / 255.0
# Background that transparent pixels are flattened onto.
BACKGROUND_GREY: int = 255
RESIZE_FILTER = Image.Resampling.LANCZOS
# EXIF tag 0x0112 (Orientation), and its values 5-8 that swap width and height (EXIF 2.32, section 4.6.4).
EXIF_ORIENTATION_TAG: int = 0x0112
EXIF_TRANSPOSED_ORIENTATIONS: frozenset[int] = frozenset({5, 6, 7, 8})


class ImageDecodeError(ValueError):
    """The bytes are not an image this function can turn into a face input; the message says why."""


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

    JPEGs are decoded at the smallest DCT scale whose shorter side is still at least min_side pixels (or at full
    size if smaller), so a large photo costs little. Raises ImageDecodeError with a short human-readable reason
    for anything that is not a usable image.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        full_size = image.size
        if image.format == "JPEG":
            # Ask the JPEG decoder for the smallest DCT scale that still covers the requested size.
            image.draft("RGB" if colour else "L", (min_side, min_side))
        width, height = image.size
        if width * height > MAX_DECODED_PIXELS:
            raise ImageDecodeError(
                f"image too large: {width}x{height} pixels exceeds the limit of {MAX_DECODED_PIXELS:,}"
            )
        orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
        image = ImageOps.exif_transpose(image)
        if orientation in EXIF_TRANSPOSED_ORIENTATIONS:
            full_size = full_size[::-1]
        converted = _to_rgb(image) if colour else _to_greyscale(image)
        converted.load()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(f"image too large (decompression bomb guard): {err}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        # Pillow reports truncated and corrupt data as OSError/SyntaxError/ValueError/EOFError.
        raise ImageDecodeError(f"corrupt or truncated image: {err}") from None
    return DecodedImage(converted, full_size)


def preprocess_image(data: bytes) -> np.ndarray:
    """Decode encoded image bytes into the model input: float32 array of shape (48, 48, 1), values 0..255.

    The whole image is the face (centre square, resized): for inputs that are already face crops.
    Raises ImageDecodeError with a short human-readable reason for anything that is not a usable image.
    """
    grey = decode_image(data).image
    face = ImageOps.fit(grey, (IMAGE_SIZE, IMAGE_SIZE), method=RESIZE_FILTER, centering=(0.5, 0.5))
    return np.asarray(face, dtype=np.float32).reshape(IMAGE_SIZE, IMAGE_SIZE, CHANNELS)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit "RGB": greyscale by the greyscale rule, then repeated in three channels;
    colour with transparency flattened onto the same background."""
    if image.mode == "RGB":
        return image
    if image.mode in ("L", "1", "I", "F") or image.mode.startswith("I;") or image.mode in ("LA", "La"):
        return _to_greyscale(image).convert("RGB")
    has_alpha = image.mode in ("RGBA", "PA", "RGBa") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (BACKGROUND_GREY,) * 3 + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_greyscale(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit greyscale ("L") by the rule in the module docstring."""
    if image.mode == "L":
        return image
    if image.mode.startswith("I"):
        # 16-bit (I;16, I;16B, ...) and 32-bit integer images: Pillow's own conversion clips at 255.
        samples = np.asarray(image, dtype=np.float64) / SIXTEEN_TO_EIGHT_BIT
        return Image.fromarray(np.clip(np.rint(samples), 0, 255).astype(np.uint8), mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (BACKGROUND_GREY,) * 3 + (255,))
        return Image.alpha_composite(background, rgba).convert("L")
    return image.convert("L")
