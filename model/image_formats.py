"""What `model.preprocess` needs to know about image files besides decoding them.

- The extra decoders: HEIC/HEIF through the `pillow-heif` plugin (AVIF is Pillow's own).
- The decode memory estimate, checked against `MAX_DECODE_BYTES` before any pixel is decoded: the image as
  Pillow stores it, the decoder's own working memory (a progressive JPEG keeps every DCT coefficient of the
  full-size image, whatever the reduced scale; HEIF/AVIF/WebP decoders keep a full frame of their own) and the
  copies the conversion to 8-bit greyscale or RGB makes.
- Why a file could not be read: "not a recognised image format" (no known signature), "unsupported: ..." (a
  real image of a kind or variant Pillow cannot decode, or whose values have no known range) or "corrupt or
  truncated image: ..." (the data is damaged). A valid file is never called corrupt.
"""

import io
import math
import re
import struct
import warnings

import pillow_heif
from PIL import Image, JpegImagePlugin

pillow_heif.register_heif_opener()  # .heic/.heif (iPhones' default); Pillow reads AVIF itself
# The memory estimate (`MAX_DECODE_BYTES`) is the guard against decompression bombs; Pillow's own guard counts
# pixels before the JPEG reduction and would refuse a large photo that decodes cheaply.
Image.MAX_IMAGE_PIXELS = None

# The most memory one image may cost while it is decoded and converted (estimate checked before decoding; the
# measured peaks are in the README). Four images in flight on a worker stay within 2 GiB.
MAX_DECODE_BYTES: int = 512 * 1024 * 1024
BYTES_PER_MEGABYTE: int = 1024 * 1024

# Bytes per pixel of Pillow's in-memory storage: 1 for 1/L/P, 2 for 16-bit greyscale, 4 for every other mode
# (multi-band modes are stored 4 bytes wide, RGB included).
_ONE_BYTE_MODES: frozenset[str] = frozenset({"1", "L", "P"})
_SIXTEEN_BIT_PREFIX: str = "I;16"
_WIDE_PIXEL_BYTES: int = 4
# libjpeg keeps the whole image's DCT coefficients for a progressive file: 64 per 8x8 block, 2 bytes each.
JPEG_BLOCK_SIDE: int = 8
JPEG_COEFFICIENT_BYTES: int = 2 * JPEG_BLOCK_SIDE * JPEG_BLOCK_SIDE
# Decoders that keep buffers of their own as large as the frame: bytes per pixel, measured with
# bench/decode_memory.py for 8-bit frames, rounded up (16-bit frames are twice as wide).
FRAME_DECODER_BYTES: dict[str, int] = {"HEIF": 4, "AVIF": 6, "WEBP": 12, "PNG": 4, "JPEG2000": 12}
# Buffers of the codecs that do not grow with the image (rows, strips, tables), with a margin.
DECODER_FIXED_BYTES: int = 16 * 1024 * 1024
# Conversion to the 8-bit target: full-size intermediates by source mode (a 32-bit float copy and its scaled
# copy for integer modes, one scaled copy for floats, an RGB(A) copy for palette and colour-space modes), then
# the result (1 byte greyscale, 4 bytes RGB; none if already in the target mode) and, with transparency, the
# alpha channel and a background (1 + 1, or 1 + 4 for RGB).
_INTERMEDIATE_BYTES: dict[str, int] = {"F": 4, "I": 8, "P": 4, "PA": 4, "CMYK": 4, "LAB": 4, "YCbCr": 4,
                                       "HSV": 4, "RGBX": 4, "RGBa": 4, "La": 4}

# Signatures of the image kinds people have, so that a file Pillow cannot open is told apart as an image of an
# unsupported kind or variant rather than "not an image".
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"II+\x00", "BigTIFF"),
    (0, b"MM\x00+", "BigTIFF"),
    (8, b"WEBP", "WEBP"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG2000"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (0, b"\xff\x0a", "JPEG XL"),
    (0, b"8BPS", "PSD"),
)
_FTYP_OFFSET, _FTYP = 4, b"ftyp"
_HEIF_BRANDS: dict[bytes, str] = {b"avif": "AVIF", b"avis": "AVIF"}
ISOBMFF_BOX_HEADER: int = 8
TIFF_BITS_PER_SAMPLE: int = 258
_BMP_HEADER_SIZES: frozenset[int] = frozenset({12, 40, 52, 56, 64, 108, 124})
# Words in Pillow's and the codecs' messages that mean "cannot decode this kind", not "this data is damaged".
UNSUPPORTED_HINTS = re.compile(r"unsupported|not supported|unknown|not available|cannot handle|no decoder|"
                               r"not implemented", re.IGNORECASE)
CORRUPT_HINTS = re.compile(r"truncated|broken|corrupt|invalid|bad |premature|crc|error -\d|checksum|"
                           r"end of (file|stream)", re.IGNORECASE)


# A plugin that reads past the end of a header raises one of these (struct's unpack, indexing the bytes, a read).
SHORT_READ_ERRORS: tuple[type[Exception], ...] = (struct.error, IndexError, EOFError)
# A file this short that carries an image signature but cannot be opened is taken as cut short: a valid image
# this small opens (a 1x1 GIF is 35 bytes, a 1x1 BMP 58), so the rule only reaches damaged ones; most formats'
# smallest images are larger anyway (a 1x1 PNG 67 bytes, baseline JPEG about 125).
TRUNCATED_BELOW_BYTES: int = 64
# Plugin messages that mean the file ended inside its header, at any length (GIF: no image descriptor before the
# end, measured for a GIF cut anywhere from 20 to about 800 bytes).
TRUNCATED_HEADER_HINTS = re.compile(r"no more images in GIF file")


# Pillow's TIFF reader warns (Python warnings, printed without the file's name) about the damage it then fails
# on; the failure becomes the file's reason in errors.csv, so the warning is only noise on the console.
warnings.filterwarnings("ignore", message=r"(Corrupt EXIF data|Truncated File Read)", category=UserWarning,
                        module=r"PIL\.TiffImagePlugin")


class ImageDecodeError(ValueError):
    """The bytes are not an image `model.preprocess` can turn into a face input; the message says why."""


def stored_bytes_per_pixel(mode: str) -> int:
    """Bytes Pillow uses per pixel of an image in this mode."""
    if mode in _ONE_BYTE_MODES:
        return 1
    return 2 if mode.startswith(_SIXTEEN_BIT_PREFIX) else _WIDE_PIXEL_BYTES


def jpeg_coefficient_bytes(image: Image.Image, full_size: tuple[int, int]) -> int:
    """Bytes libjpeg allocates for the DCT coefficients of a progressive JPEG at full size (0 for baseline)."""
    if not isinstance(image, JpegImagePlugin.JpegImageFile) or not image.info.get("progressive"):
        return 0
    layers = getattr(image, "layer", None) or [(0, 1, 1, 0)]
    h_max = max(layer[1] for layer in layers)
    v_max = max(layer[2] for layer in layers)
    width, height = full_size
    blocks = sum(math.ceil(math.ceil(width * h / h_max) / JPEG_BLOCK_SIDE)
                 * math.ceil(math.ceil(height * v / v_max) / JPEG_BLOCK_SIDE) for _, h, v, _ in layers)
    return blocks * JPEG_COEFFICIENT_BYTES


def decode_memory_bytes(image: Image.Image, full_size: tuple[int, int], colour: bool) -> int:
    """Estimated peak bytes of decoding `image` (opened, draft applied, not loaded) and converting it to 8-bit
    greyscale, or RGB with colour; full_size is its size before any reduced-scale draft."""
    pixels = image.size[0] * image.size[1]
    stored = stored_bytes_per_pixel(image.mode)
    decoder = FRAME_DECODER_BYTES.get(image.format or "", 0) * (2 if stored == 2 else 1)
    target_bytes = _WIDE_PIXEL_BYTES if colour else 1
    result = 0 if image.mode == ("RGB" if colour else "L") else target_bytes
    has_alpha = "A" in image.mode or "a" in image.mode or "transparency" in image.info
    alpha = (1 + target_bytes) if has_alpha else 0
    intermediate = _INTERMEDIATE_BYTES.get("I" if image.mode.startswith("I") else image.mode, 0)
    per_pixel = stored + decoder + intermediate + result + alpha
    return pixels * per_pixel + jpeg_coefficient_bytes(image, full_size) + DECODER_FIXED_BYTES


def check_decode_memory(image: Image.Image, full_size: tuple[int, int], colour: bool) -> None:
    """Raise ImageDecodeError('image too large: ...') when decoding would cost more than MAX_DECODE_BYTES."""
    needed = decode_memory_bytes(image, full_size, colour)
    if needed > MAX_DECODE_BYTES:
        width, height = image.size
        # A JPEG decoded at reduced scale names its full size too: the scale is not what makes it large.
        scaled = "" if tuple(full_size) == (width, height) else f" of a {full_size[0]}x{full_size[1]} image"
        raise ImageDecodeError(
            f"image too large: decoding {width}x{height} pixels{scaled} ({image.format} {image.mode}) needs about "
            f"{needed // BYTES_PER_MEGABYTE:,} MB, over the limit of {MAX_DECODE_BYTES // BYTES_PER_MEGABYTE:,} MB")


def declared_sample_bits(image: Image.Image) -> int | None:
    """Bits per sample a TIFF declares (its tag 258), e.g. 12 for a 12-bit scan that Pillow reads as 16-bit."""
    declared = getattr(image, "tag_v2", {}).get(TIFF_BITS_PER_SAMPLE)
    if isinstance(declared, tuple):
        declared = max(declared, default=None)
    return int(declared) if declared else None


def isobmff_truncation(data: bytes) -> str | None:
    """For HEIF/AVIF (ISO base media boxes): which top-level box the data ends inside, else None."""
    offset = 0
    while offset + ISOBMFF_BOX_HEADER <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        kind = data[offset + 4:offset + ISOBMFF_BOX_HEADER].decode("latin-1")
        if size == 1 and offset + 16 <= len(data):  # 64-bit size follows the type
            size = int.from_bytes(data[offset + ISOBMFF_BOX_HEADER:offset + 16], "big")
        if size == 0:  # the box runs to the end of the file
            return None
        if size < ISOBMFF_BOX_HEADER or offset + size > len(data):
            return f"file ends inside its '{kind}' box"
        offset += size
    return None


def signature_format(data: bytes) -> str | None:
    """The image kind the first bytes announce (e.g. "PNG", "HEIF", "JPEG XL"), or None."""
    for offset, magic, name in _SIGNATURES:
        if data[offset:offset + len(magic)] == magic and (name != "WEBP" or data[:4] == b"RIFF"):
            return name
    if data[_FTYP_OFFSET:_FTYP_OFFSET + len(_FTYP)] == _FTYP:
        brand = data[_FTYP_OFFSET + len(_FTYP):_FTYP_OFFSET + len(_FTYP) + 4]
        return _HEIF_BRANDS.get(brand, "HEIF")
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    return None


def classify_failure(detail: str, kind: str | None = None) -> str:
    """The reason for a file that failed to decode: "unsupported: ..." when the message says the kind or variant
    cannot be decoded, else "corrupt or truncated image: ..."."""
    detail = " ".join(detail.split())
    prefix = f"{kind} " if kind else ""
    if UNSUPPORTED_HINTS.search(detail) and not CORRUPT_HINTS.search(detail):
        return f"unsupported: {prefix}{detail}".strip()
    return f"corrupt or truncated image: {prefix}{detail}".strip()


def load_failure_reason(data: bytes, error: Exception) -> str:
    """The reason for a file Pillow opened but could not decode (see classify_failure); a HEIF/AVIF file that
    ends inside one of its boxes is truncated, whatever its decoder says."""
    kind = signature_format(data)
    if kind in ("HEIF", "AVIF") and isobmff_truncation(data):
        return f"corrupt or truncated image: {kind} {isobmff_truncation(data)}"
    return classify_failure(str(error) or type(error).__name__)


def unidentified_reason(data: bytes) -> str:
    """Why Pillow could not open these bytes at all: not an image, an unsupported kind or variant, or damage."""
    kind = signature_format(data)
    if kind is None:
        return "not a recognised image format"
    if kind in ("HEIF", "AVIF") and isobmff_truncation(data):
        return f"corrupt or truncated image: {kind} {isobmff_truncation(data)}"
    plugin = {"BigTIFF": "TIFF", "HEIF": "HEIF", "AVIF": "AVIF"}.get(kind, kind)
    factory = Image.OPEN.get(plugin, (None, None))[0]
    if factory is None:
        return f"unsupported: {kind} images cannot be decoded here"
    try:
        factory(io.BytesIO(data), "")
    except Exception as err:  # the plugin's own words say what it could not do
        detail = " ".join((str(err) or type(err).__name__).split())
        if CORRUPT_HINTS.search(detail):
            return classify_failure(detail, kind)
        if isinstance(err, SHORT_READ_ERRORS) or len(data) < TRUNCATED_BELOW_BYTES:
            # The header ran out of bytes (a JPEG of 4 bytes, a TIFF of 40): the plugin's words would be Python's.
            return f"corrupt or truncated image: {kind} file of {len(data):,} bytes"
        if TRUNCATED_HEADER_HINTS.search(detail):  # a file cut short, not a variant
            return f"corrupt or truncated image: {kind} file of {len(data):,} bytes ({detail})"
        return f"unsupported: {kind} variant that cannot be decoded ({detail})"
    return f"unsupported: {kind} variant that cannot be decoded"
