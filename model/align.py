"""Face alignment: a detected face turned into the network's 48x48 greyscale input, framed like FER2013's faces.

A similarity transform (rotation, uniform scale, shift) maps three landmarks, both eye centres and the mouth's
centre, onto TEMPLATE_LANDMARKS, where they sit in FER2013's training faces, so a face from a photo reaches the
network upright and at the size and position of the faces it learned from. The transform is the least-squares
fit of the three points (Umeyama, "Least-squares estimation of transformation parameters between two point
patterns", IEEE TPAMI 1991; the five-landmark alignment of face recognition, e.g. insightface's `norm_crop`, fits
the same way). With the eyes alone, a face turned sideways (its eyes closer together in the image) came out
enlarged, and an error in either eye landmark moved the whole frame; the mouth holds the scale to the face's
height too.
The nose tip is left out: it moves sideways with every turn of the head. The mouth's centre is the mean of MTCNN's
two mouth corners and is what BlazeFace gives (model.faces), so both detectors' faces are aligned alike.
TEMPLATE_LANDMARKS was measured by running the face detector (model.faces) on FER2013 training faces (searched as
the job searches them: a face missed at first is searched again inside a 30% mean-grey border, see model.faces)
and taking the median landmark positions: `python -m trainer.face_template` prints the measurement.

Pixels the transform takes from outside the image are filled with the image's mean grey (a black corner would be
a feature the network never saw).

Last, the aligned face is stretched to the full grey range (darkest pixel 0, brightest 255:
`model.preprocess.full_grey_range`), because every face the network learned from spans it, while faces found in
photos rarely do (muxspace's aligned faces: median darkest 10, brightest 220, standard deviation 42 against
FER2013's 77). Measured 2026-12-02 with the shipped model (trainer/RESULTS.md, "Faces found in photos stretched to
the full grey range"): muxspace ROC AUC 0.9618 -> 0.9640, sad recall 90.67% -> 91.79%.
"""

import dataclasses

import numpy as np
from PIL import Image

from model.contract import CHANNELS, IMAGE_SIZE
from model.faces import Face, FaceFinder
from model.preprocess import DecodedImage, full_grey_range, is_flat, whole_image_input

# (x, y) of the left-of-image eye, the right-of-image eye and the mouth's centre in a 48x48 FER2013 face, pixels:
# the medians measured by `python -m trainer.face_template` on 1,664 of 2,000 FER2013 training faces (MTCNN's
# landmarks; eyes x 14.42 and 32.75, y 18.18 and 17.87; mouth corners x 15.34 and 31.95, y 36.56 and 36.31), the
# eyes levelled to their mean height so an aligned face is not tilted, the mouth's centre the mean of its corners.
TEMPLATE_LANDMARKS: tuple[tuple[float, float], ...] = ((14.42, 18.03), (32.75, 18.03), (23.65, 36.44))
# What summary.json records as the run's face alignment (--incremental relabels when it changes; runs before
# 2026-12-02 aligned by the eyes alone and recorded nothing; runs of 2026-12-02 recorded "eyes+mouth", faces not
# yet stretched to the full grey range), and what a model trained on aligned crops records.
FACE_ALIGNMENT: str = "eyes+mouth+full-range"
FACE_ALIGNMENT_BEFORE: str = "eyes"
# A face is shrunk with an antialiasing filter to about this many times the output size before the final
# (bilinear) transform, so that small output pixels average the many input pixels they cover.
SUPERSAMPLE: int = 2
SHRINK_FILTER = Image.Resampling.LANCZOS
WARP_FILTER = Image.Resampling.BILINEAR
# Where a pixel's centre lies in its own unit square (Pillow's continuous coordinates).
PIXEL_CENTRE: float = 0.5


def alignment_points(face: Face) -> np.ndarray:
    """float64 (3, 2): the face's landmarks that alignment uses, in TEMPLATE_LANDMARKS order: its two eyes (as
    `Face.eyes` orders them) and the mean of its two mouth landmarks, pixels."""
    left_eye, right_eye = (np.asarray(eye, np.float64) for eye in face.eyes)
    mouth = np.asarray(face.landmarks, np.float64)[3:5].mean(axis=0)
    return np.vstack([left_eye, right_eye, mouth])


def similarity_to_template(points: np.ndarray) -> tuple[float, float, float, float]:
    """(a, b, tx, ty) of the similarity that maps TEMPLATE_LANDMARKS onto `points` (float (3, 2), pixels, in
    TEMPLATE_LANDMARKS order) with the least squared error: template point (x, y) goes to
    (a x - b y + tx, b x + a y + ty), i.e. a rotation by atan2(b, a), a scale of hypot(a, b) source pixels per
    template pixel and a shift. Solved as linear least squares (numpy.linalg.lstsq) in the four unknowns.
    Points that are a mirror image of the template (the mouth on the wrong side of the line from the first eye to
    the second) have no close similarity: the fit shrinks them towards their centre, so the face comes out
    enlarged; neither detector gives such points (MTCNN's are an upright face's, BlazeFace's eyes are ordered by
    its mouth). Raises ValueError when the points coincide or are not finite (no transform exists).
    """
    source = np.asarray(points, np.float64)
    if not np.isfinite(source).all() or np.allclose(source, source[0]):
        raise ValueError("face landmarks coincide; the face cannot be aligned")
    template = np.asarray(TEMPLATE_LANDMARKS, np.float64)
    ones, zeros = np.ones(len(template)), np.zeros(len(template))
    design = np.empty((2 * len(template), 4))
    design[0::2] = np.column_stack([template[:, 0], -template[:, 1], ones, zeros])  # x equations
    design[1::2] = np.column_stack([template[:, 1], template[:, 0], zeros, ones])  # y equations
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, source.reshape(-1), rcond=None)
    return float(a), float(b), float(tx), float(ty)


def aligned_face(image: Image.Image, face: Face) -> np.ndarray:
    """The face in `image` (Pillow, 8-bit: "L", "RGB" or another mode Pillow converts to "L" by luma, in the pixels
    `face` was found in) as the network's input. A 16-bit or float image must be brought to 0..255 first, as
    model.preprocess decodes every image.

    Returns float32 (48, 48, 1), values 0..255, greyscale by Pillow's "L" rule (ITU-R 601-2 luma), stretched so
    that its darkest pixel is 0 and its brightest 255 (`model.preprocess.full_grey_range`: a flat face stays as
    it is).
    Raises ValueError if its landmarks coincide (no transform exists).
    """
    grey = image if image.mode == "L" else image.convert("L")
    a, b, tx, ty = similarity_to_template(alignment_points(face))
    # Landmarks and the template are in pixel-index coordinates (pixel i's centre at i); Pillow's resize and
    # transform work in continuous ones (pixel i spans i..i+1). Shift the similarity's translation so that
    # template point t + 0.5 maps to landmark s + 0.5.
    tx, ty = tx + PIXEL_CENTRE * (1 - a + b), ty + PIXEL_CENTRE * (1 - a - b)
    fx = fy = 1.0
    # Shrink first when the face is much larger than the output, so the warp below does not alias.
    shrink = max(1.0, float(np.hypot(a, b)) / SUPERSAMPLE)
    if shrink > 1.0:
        size = (max(1, round(grey.size[0] / shrink)), max(1, round(grey.size[1] / shrink)))
        fx, fy = size[0] / grey.size[0], size[1] / grey.size[1]  # continuous coordinates scale exactly so
        grey = grey.resize(size, SHRINK_FILTER, box=None, reducing_gap=None)
    # Output point p (template, continuous) comes from source point (a px - b py + tx, b px + a py + ty).
    fill = int(round(float(np.asarray(grey).mean()))) if grey.size[0] * grey.size[1] else 0
    warped = grey.transform((IMAGE_SIZE, IMAGE_SIZE), Image.Transform.AFFINE,
                            (fx * a, -fx * b, fx * tx, fy * b, fy * a, fy * ty), resample=WARP_FILTER, fillcolor=fill)
    return np.asarray(full_grey_range(warped), dtype=np.float32).reshape(IMAGE_SIZE, IMAGE_SIZE, CHANNELS)


# Images with no side longer than this are thumbnails of one face, as FER2013's 48x48 crops are: the whole image
# is the network input (measured on the FER2013 validation split with the shipped model: whole image 93.44%
# accuracy, the same faces aligned 93.27%; the crop is already framed like the training faces), unless the model
# was trained on aligned crops (`ModelMetadata.aligned_crops`): then its face is aligned when one is found.
FACE_THUMBNAIL_MAX_SIDE: int = 64
# A thumbnail in which the detector finds no face is still taken whole when it is at least this many pixels on
# its shorter side and not flat (the detector misses about 1 in 9 FER2013 crops; a 1x1 or blank image is no face).
FACE_THUMBNAIL_MIN_SIDE: int = 24


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
