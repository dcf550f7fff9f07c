"""The fixed facts that training and labelling must agree on.

Anything here changes the meaning of a trained model, so both `trainer/` and `pipeline/` read it from this one
place instead of keeping their own copies.
"""

from pathlib import Path

# Output classes, in the order of the model's probability vector.
CLASS_NAMES: tuple[str, ...] = ("happy", "sad")

# The network sees one 48x48 greyscale face, the native FER2013 format.
IMAGE_SIZE: int = 48
CHANNELS: int = 1
INPUT_SHAPE: tuple[int, int, int] = (IMAGE_SIZE, IMAGE_SIZE, CHANNELS)

# File name endings (lower case) that the labelling job treats as images; matched case-insensitively. Every
# still-image kind a camera, phone, scanner, browser or image editor saves and `model.preprocess` reads:
# JPEG (also .jfif/.jif/.jfi, and MPO saved as .jpg/.mpo), PNG, BMP, GIF, WebP, TIFF, HEIC/HEIF, AVIF,
# JPEG 2000, PNM (scanners), TGA.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".jif", ".jfi", ".mpo",
    ".png", ".bmp", ".dib", ".gif", ".webp", ".tif", ".tiff",
    ".heic", ".heics", ".heif", ".hif", ".avif",
    ".jp2", ".j2k", ".jpf", ".jpx",
    ".pnm", ".pbm", ".pgm", ".ppm", ".tga",
})

# Name of the serving signature every exported facelabel SavedModel has.
SERVING_SIGNATURE: str = "serving_default"
# Name of the input tensor of that signature: float32 [batch, 48, 48, 1], pixel values 0..255.
SERVING_INPUT: str = "images"
# Name of the output tensor: float32 [batch, len(CLASS_NAMES)], per-class probabilities summing to 1.
SERVING_OUTPUT: str = "probabilities"

# The default model shipped with the code (trained by `make train`).
DEFAULT_MODEL_DIR: Path = Path(__file__).resolve().parent / "default"


def is_image_path(path: str) -> bool:
    """True if the path ends with a known image extension, ignoring case."""
    dot = path.rfind(".")
    return dot >= 0 and "/" not in path[dot:] and path[dot:].lower() in IMAGE_EXTENSIONS
