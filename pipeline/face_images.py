"""The face as the model sees it, as a small PNG: the run report's thumbnails and the web app's preview.

Both start from `model.preprocess.preprocess_image`, so what a person looks at is exactly the 48x48 greyscale
input the network got, not the original photo. The PNG stays 48x48 (a few KB); pages enlarge it with CSS
`image-rendering: pixelated`, which shows every model pixel without inventing new ones.
"""

import base64
import io

import numpy as np
from PIL import Image

from model.preprocess import preprocess_image

PNG_MIME: str = "image/png"
PIXEL_MIN: int = 0
PIXEL_MAX: int = 255


def face_png(face: np.ndarray) -> bytes:
    """PNG bytes of a preprocessed face (float 0..255, shape (48, 48, 1) or (48, 48)), greyscale, unscaled."""
    pixels = np.clip(np.rint(np.squeeze(face, axis=-1) if face.ndim == 3 else face), PIXEL_MIN, PIXEL_MAX)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def png_data_uri(png: bytes) -> str:
    """A data: URI, so pages embed the image and open from disk or a bucket without fetching anything else."""
    return f"data:{PNG_MIME};base64,{base64.b64encode(png).decode('ascii')}"


def face_data_uri(data: bytes) -> str:
    """Encoded image bytes -> data: URI of the model's view of it; raises ImageDecodeError like preprocess_image."""
    return png_data_uri(face_png(preprocess_image(data)))
