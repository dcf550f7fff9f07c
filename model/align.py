"""Face alignment: a detected face turned into the network's 48x48 greyscale input, framed like FER2013's faces.

A similarity transform (rotation, uniform scale, shift) maps the two eye landmarks onto TEMPLATE_EYES, where the
eyes sit in FER2013's training faces, so a face from a photo reaches the network upright and at the size and
position of the faces it learned from. TEMPLATE_EYES was measured by running the face detector (model.faces) on
FER2013 training faces (searched as the job searches them: a face missed at first is searched again inside a
30% mean-grey border, see model.faces) and taking the median eye positions:
`python -m trainer.face_template` prints the measurement.

Pixels the transform takes from outside the image are filled with the image's mean grey (a black corner would be
a feature the network never saw).
"""

import dataclasses

import numpy as np
from PIL import Image

from model.contract import CHANNELS, IMAGE_SIZE
from model.faces import Face, FaceFinder
from model.preprocess import DecodedImage, whole_image_input

# (x, y) of the left-of-image and right-of-image eye centres in a 48x48 FER2013 face, in pixels: the medians
# measured by `python -m trainer.face_template` on 2,000 FER2013 training faces (x 14.45 and 32.74; y 18.19 and
# 17.90, levelled to their mean so an aligned face is not tilted).
TEMPLATE_EYES: tuple[tuple[float, float], tuple[float, float]] = ((14.5, 18.0), (32.7, 18.0))
# A face is shrunk with an antialiasing filter to about this many times the output size before the final
# (bilinear) transform, so that small output pixels average the many input pixels they cover.
SUPERSAMPLE: int = 2
SHRINK_FILTER = Image.Resampling.LANCZOS
WARP_FILTER = Image.Resampling.BILINEAR


def similarity_to_template(left_eye: np.ndarray, right_eye: np.ndarray) -> tuple[float, float, float]:
    """(scale, cos, sin) of the similarity that maps TEMPLATE_EYES onto the given eyes (each (x, y) pixels).

    scale: source pixels per template pixel; cos, sin: of the rotation from template to source.
    """
    template = np.asarray(TEMPLATE_EYES, dtype=np.float64)
    source = np.asarray(right_eye, np.float64) - np.asarray(left_eye, np.float64)
    target = template[1] - template[0]
    scale = float(np.hypot(*source) / np.hypot(*target))
    angle = float(np.arctan2(source[1], source[0]) - np.arctan2(target[1], target[0]))
    return scale, float(np.cos(angle)), float(np.sin(angle))


def aligned_face(image: Image.Image, face: Face) -> np.ndarray:
    """The face in `image` (Pillow, any mode, in the pixels `face` was found in) as the network's input.

    Returns float32 (48, 48, 1), values 0..255, greyscale by Pillow's "L" rule (ITU-R 601-2 luma).
    Raises ValueError if the two eye landmarks coincide (no transform exists).
    """
    grey = image if image.mode == "L" else image.convert("L")
    left_eye, right_eye = (np.asarray(eye, np.float64) for eye in face.eyes)
    if np.allclose(left_eye, right_eye):
        raise ValueError("eye landmarks coincide; the face cannot be aligned")
    scale, cos, sin = similarity_to_template(left_eye, right_eye)
    # Shrink first when the face is much larger than the output, so the warp below does not alias.
    shrink = max(1.0, scale / SUPERSAMPLE)
    if shrink > 1.0:
        size = (max(1, round(grey.size[0] / shrink)), max(1, round(grey.size[1] / shrink)))
        grey = grey.resize(size, SHRINK_FILTER, box=None, reducing_gap=None)
        left_eye, scale = left_eye / shrink, scale / shrink
    # Output pixel p (template coordinates) comes from source point left_eye + scale * R (p - template_left).
    a, b, d, e = scale * cos, -scale * sin, scale * sin, scale * cos
    tx, ty = TEMPLATE_EYES[0]
    c = left_eye[0] - (a * tx + b * ty)
    f = left_eye[1] - (d * tx + e * ty)
    fill = int(round(float(np.asarray(grey).mean()))) if grey.size[0] * grey.size[1] else 0
    warped = grey.transform((IMAGE_SIZE, IMAGE_SIZE), Image.Transform.AFFINE, (a, b, c, d, e, f),
                            resample=WARP_FILTER, fillcolor=fill)
    return np.asarray(warped, dtype=np.float32).reshape(IMAGE_SIZE, IMAGE_SIZE, CHANNELS)


# Images with no side longer than this are thumbnails of one face, as FER2013's 48x48 crops are: the whole image
# is the network input (measured on the FER2013 validation split with the shipped model: whole image 93.44%
# accuracy, the same faces aligned 93.27%; the crop is already framed like the training faces), unless the model
# was trained on aligned crops (`ModelMetadata.aligned_crops`): then its face is aligned when one is found.
FACE_THUMBNAIL_MAX_SIDE: int = 64
# A thumbnail in which the detector finds no face is still taken whole when it is at least this many pixels on
# its shorter side and not flat (the detector misses about 1 in 9 FER2013 crops; a 1x1 or blank image is no face).
FACE_THUMBNAIL_MIN_SIDE: int = 24
# Standard deviation of grey values (0..255) under which an image is flat (blank, a single colour).
FLAT_MAX_STD: float = 4.0


@dataclasses.dataclass(frozen=True)
class FaceInput:
    """One face ready for the network: its rank (1 = largest), the detected face (None: the whole image is
    taken as the face) and the network input, float32 (48, 48, 1) of 0..255."""

    rank: int
    face: Face | None
    pixels: np.ndarray = dataclasses.field(compare=False)

    def original_box(self, decoded: DecodedImage) -> tuple[float, float, float, float]:
        """(x, y, width, height) of this face in the full-size upright image's pixels (the whole image when it
        was taken whole); `decoded` is the image the face was found in."""
        if self.face is None:
            return 0.0, 0.0, float(decoded.original_size[0]), float(decoded.original_size[1])
        return tuple(v * decoded.scale for v in self.face.box)


def is_face_thumbnail(image: Image.Image) -> bool:
    """Whether an image is of face size (at most FACE_THUMBNAIL_MAX_SIDE pixels per side), like FER2013's crops."""
    return max(image.size) <= FACE_THUMBNAIL_MAX_SIDE


def is_flat(image: Image.Image) -> bool:
    """Whether an image is (nearly) one grey: standard deviation of its 0..255 luma under FLAT_MAX_STD."""
    grey = image if image.mode == "L" else image.convert("L")
    return float(np.asarray(grey, dtype=np.float32).std()) < FLAT_MAX_STD


def face_inputs(image: Image.Image, faces: list[Face], all_faces: bool,
                aligned_crops: bool = False) -> list[FaceInput]:
    """The network inputs for the faces found in `image` (largest first), by the rule of this module:

    - faces found: the largest (all_faces False) or every face, each aligned to the template; a face thumbnail
      (no side over FACE_THUMBNAIL_MAX_SIDE) is taken whole instead, unless `aligned_crops` (the model's
      `ModelMetadata.aligned_crops`: it was trained on crops aligned this way);
    - no face found: a face thumbnail at least FACE_THUMBNAIL_MIN_SIDE on its shorter side and not flat is
      taken whole (one FaceInput with face None); anything else gives an empty list: the image has no face.
    """
    thumbnail = is_face_thumbnail(image)
    if not faces:
        if thumbnail and min(image.size) >= FACE_THUMBNAIL_MIN_SIDE and not is_flat(image):
            return [FaceInput(1, None, whole_image_input(image))]
        return []
    chosen = faces if all_faces else faces[:1]
    whole = thumbnail and not aligned_crops
    return [FaceInput(rank, face, whole_image_input(image) if whole else aligned_face(image, face))
            for rank, face in enumerate(chosen, start=1)]


def find_face_inputs(finder: FaceFinder, images: list[Image.Image], all_faces: bool,
                     aligned_crops: bool = False) -> list[list[FaceInput]]:
    """`face_inputs` of each image (upright, as `model.faces.decode_for_faces` gives it), its faces found by
    `finder` in one batch: what a labelling run feeds the network for each image; an empty list where it has no
    face."""
    return [face_inputs(image, faces, all_faces, aligned_crops)
            for image, faces in zip(images, finder.find(images))]


def crop_inputs(finder: FaceFinder, images: list[Image.Image], aligned_crops: bool) -> np.ndarray:
    """Labelled face crops (upright, as `model.faces.decode_for_faces` gives them) as the network sees them in
    the labelling job's default mode, for training and evaluation: float32 [n, 48, 48, 1] of 0..255.

    Each crop is its largest face's input (`face_inputs`); a crop in which no face is found, or too small or flat
    for the job to take whole, is taken whole anyway: it is a face by its label, and dropping it would change the
    data the model learns from and is scored on.
    """
    out = np.empty((len(images), IMAGE_SIZE, IMAGE_SIZE, CHANNELS), np.float32)
    for i, (image, faces) in enumerate(zip(images, finder.find(images))):
        found = face_inputs(image, faces, all_faces=False, aligned_crops=aligned_crops)
        out[i] = found[0].pixels if found else whole_image_input(image)
    return out
