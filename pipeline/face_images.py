"""The face as the model sees it, as a small PNG: the run report's thumbnails and the web app's preview.

Both use the labelling job's own code (`model.preprocess.preprocess_image` for whole images, `model.faces` and
`model.align` for found faces), so what a person looks at is exactly the 48x48 greyscale input the network got,
not the original photo. The PNG stays 48x48 (a few KB); pages enlarge it with CSS
`image-rendering: pixelated`, which shows every model pixel without inventing new ones.
"""

import base64
import io

import numpy as np
from PIL import Image

from model.align import find_face_inputs
from model.faces import FaceFinder, decode_for_faces
from model.preprocess import ImageDecodeError, decode_image, preprocess_image

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


# Longest side of a whole-image thumbnail (an image in which no face was found), in pixels.
PHOTO_THUMBNAIL_SIDE: int = 96


def photo_data_uri(data: bytes) -> str:
    """Encoded image bytes -> data: URI of the whole upright image, greyscale, at most PHOTO_THUMBNAIL_SIDE per
    side: what a person needs to see why no face was found. Raises ImageDecodeError for a non-image."""
    image = decode_image(data, min_side=PHOTO_THUMBNAIL_SIDE).image
    image.thumbnail((PHOTO_THUMBNAIL_SIDE, PHOTO_THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return png_data_uri(buffer.getvalue())


def aligned_face_data_uri(data: bytes, rank: int, finder: FaceFinder, aligned_crops: bool = False) -> str:
    """Encoded image bytes -> data: URI of face number `rank` (1 = largest) as a labelling run found and aligned
    it (aligned_crops: its model's `ModelMetadata.aligned_crops`). Raises ImageDecodeError for a non-image, or
    when the image no longer has that many faces."""
    decoded = decode_for_faces(data)
    [inputs] = find_face_inputs(finder, [decoded.image], all_faces=True, aligned_crops=aligned_crops)
    for face in inputs:
        if face.rank == rank:
            return png_data_uri(face_png(face.pixels))
    raise ImageDecodeError(f"face {rank} is no longer found in this image")
