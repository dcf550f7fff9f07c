"""Face detection: where the faces are in a decoded image, with five landmarks each.

The detector is MTCNN (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks", IEEE SPL 2016) from the `mtcnn` package (ipazc/mtcnn 1.0, MIT licence, TensorFlow 2): its three small
networks' weights ship inside the wheel, so nothing is downloaded at run time. It returns a box, a confidence and
five landmarks (both eye centres, nose tip, both mouth corners) per face.

How an image is searched, in order:
1. A detection copy: the image shrunk so its longer side is at most DETECTION_MAX_SIDE pixels (detection time
   grows with pixels). MTCNN searches faces down to MIN_FACE_SIZE pixels in that copy and reports those from
   MIN_REPORTED_FACE_SIDE (see 3), so the smallest face found is about 4% of the image's longer side.
2. If no face is found, the copy is searched again inside a border of TIGHT_CROP_BORDER of its size on every side,
   filled with its mean grey: a tight face crop (FER2013-style, a studio head shot) has no context around the
   face, and MTCNN misses most of them without that border.
3. Faces under MIN_FACE_SCORE confidence are dropped, and so are small faces (shorter box side under
   SMALL_FACE_SIDE pixels of the detection copy) unless the detector is at least SMALL_FACE_MIN_SCORE sure and
   they are at least MIN_REPORTED_FACE_SIDE pixels: MTCNN's false faces in photos without people are small and
   less certain (measured below). The rest are sorted largest first (box area).
4. If MTCNN still finds no face, a second detector, BlazeFace (`model.blazeface`), searches the copy; its faces
   are reported from FALLBACK_MIN_SCORE and a shorter box side of FALLBACK_MIN_FACE_SHARE of the copy's longer
   side (measured below). Its keypoints give the eyes; it locates the mouth's centre, not its corners, so both
   mouth landmarks of such a face are that centre. `Face.detector` says which detector found a face.
Boxes and landmarks are returned in the decoded image's pixel coordinates.

Images are detected in batches of one detection-copy size: a batch of small crops costs a few milliseconds an image
where one call costs tens. Only images of exactly the same size share a call: MTCNN pads a batch to its largest
image, which made a photo's face box depend on the other photos in its batch (two identical runs over 300
muxspace photos differed in 7 rows, one label flipped), and see `stable_sort_by_scores`.
"""

import dataclasses
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from PIL import Image

from model.blazeface import NMS_IOU, BlazeFace, box_iou
from model.preprocess import DecodedImage, decode_image

# Longest side, in pixels, of the copy of an image that the detector searches.
DETECTION_MAX_SIDE: int = 640
# MTCNN's smallest face searched, in pixels of the detection copy (its default; smaller slows the pyramid down).
MIN_FACE_SIZE: int = 20
# Border added on each side, as a fraction of the copy's longer side, when an image is searched a second time.
TIGHT_CROP_BORDER: float = 0.3
# Faces the detector is less sure of than this are not reported: MTCNN's output network score (0..1), at its own
# default (threshold_onet 0.8).
MIN_FACE_SCORE: float = 0.8
# Small faces need more certainty. Measured 2026-11-30 with a scratch script over the stored MTCNN candidates
# (both search passes) of the 300 shared landscapes enlarged to 640x480, 1600x1200 and 800x800, 1,799 FER2013
# validation faces pasted into 640x480 scenes and the 2,655 muxspace photos: MTCNN at its own 0.8 reports false
# faces in about a third of the enlarged landscapes, 95% of them under 48 pixels (median 25, score 0.87); small
# faces from 0.95 left 6, 8 and 7 of the 300 with a false face, from 0.97 3, 4 and 4, while the pasted faces found
# stay 91.0% and muxspace loses one photo's face (2,614 of 2,655 found instead of 2,615).
SMALL_FACE_SIDE: float = 48.0
SMALL_FACE_MIN_SCORE: float = 0.97
MIN_REPORTED_FACE_SIDE: float = 24.0
# MTCNN's first two stages keep their defaults (0.6 and 0.7), and larger faces its output network's 0.8. Tried
# 2026-11-30: (1) candidates from 0.4 in the first two stages find 93.7-95.1% of the pasted faces, but 10-22 of the
# 300 enlarged landscapes then get a false face, or, with medium faces held to 0.95 to prevent that, 13 of
# muxspace's 228 medium-sized real faces are lost, and detection takes about a fifth longer; (2) faces of 96 pixels
# and more from 0.5 find 92.2% of the pasted faces, but such unsure detections can be mis-scaled: in a test group
# photo one came out 175x245 pixels around a 130-pixel face, with its landmarks scaled alike.
# BlazeFace, asked when MTCNN finds no face: its faces from this score (0..1) and this shorter box side (share of
# the detection copy's longer side). Chosen 2026-12-01 on sets apart from those the figures are stated on: FER2013
# training faces pasted into scenes (not the test faces of trainer.photos) and the 300 landscapes turned and
# zoomed (not as they are); see trainer/RESULTS.md, "A second face detector".
FALLBACK_MIN_SCORE: float = 0.55
FALLBACK_MIN_FACE_SHARE: float = 0.13
# A face BlazeFace finds is taken the other way up only when the copy turned half round scores it at least this
# much higher (see FaceFinder._fallback_faces). Chosen 2026-12-02 as the smallest margin that turns none of the
# upright faces of a set apart from the reported ones (FER2013 training faces pasted into scenes, 300 upright and
# 300 upside down, seed 11; BlazeFace asked about each): margin 0 turned 3 of the 295 upright faces found, 0.1 one,
# 0.15 none, while still turning 113 of the 193 upside-down ones upright (179 at margin 0). Where MTCNN finds no
# face (hard faces: small, blurred, turned away) the turned copy often scores an upright face a little higher:
# 6 of muxspace's 19 such faces by 0.009-0.103, all upright photos, which margin 0 fed to the network upside down.
TURN_MIN_SCORE_GAIN: float = 0.15
MTCNN: str = "mtcnn"
BLAZEFACE: str = "blazeface"
# What summary.json records as the run's face finding (--incremental relabels when it changes; runs before
# 2026-12-01 found faces with MTCNN alone and recorded nothing).
FACE_FINDER: str = f"{MTCNN}+{BLAZEFACE}"
FACE_FINDER_BEFORE: str = MTCNN
# Detection copies are resized with this filter (antialiased when shrinking).
DETECTION_RESIZE_FILTER = Image.Resampling.BILINEAR
# Pillow's reducing_gap for shrinking: a fast integer reduction first, then the filter over the last 2x or more.
SHRINK_REDUCING_GAP: float = 2.0
# Landmark order in Face.landmarks (rows), as MTCNN returns them. "left" is the left of the image.
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# Columns of MTCNN's numpy output: image index, x1, y1, x2, y2, confidence, the five landmarks' x, their y.
_BOX_COLUMNS = slice(1, 5)
_SCORE_COLUMN = 5
_LANDMARK_COLUMNS = slice(6, 16)


@dataclasses.dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image it was found in.

    box: (x, y, width, height) of the face box, pixels. score: detector confidence, 0..1.
    landmarks: float array (5, 2) of (x, y) in LANDMARK_NAMES order. detector: MTCNN or BLAZEFACE, which found it
    (their scores are not on one scale).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray = dataclasses.field(compare=False)
    detector: str = MTCNN

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    @property
    def eyes(self) -> tuple[np.ndarray, np.ndarray]:
        """The two eyes, each (x, y) pixels, in the order that puts the face upright when aligned: for an upright
        face the left-of-image eye first. MTCNN's landmarks are those of an upright face: the few upside-down
        faces it reports come with landmarks read as upright and stay upside down when aligned (see README, "How
        faces are found"). A face BlazeFace finds turned or upside down has its eyes ordered so that its mouth
        comes out below them."""
        return self.landmarks[0], self.landmarks[1]

    def clipped(self, size: tuple[int, int]) -> "Face":
        """The same face with its box cut to an image of size (width, height): a face at the edge of a photo, or
        found in the border added around a tight crop, may reach past it. Landmarks are kept as found."""
        x, y, w, h = self.box
        left, top = min(max(x, 0.0), size[0]), min(max(y, 0.0), size[1])
        right, bottom = min(max(x + w, 0.0), size[0]), min(max(y + h, 0.0), size[1])
        return Face((left, top, right - left, bottom - top), self.score, self.landmarks, self.detector)

    def scaled(self, factor: float, shift: tuple[float, float] = (0.0, 0.0)) -> "Face":
        """The same face in coordinates where point p becomes (p - shift) * factor."""
        x, y, w, h = self.box
        dx, dy = shift
        return Face(((x - dx) * factor, (y - dy) * factor, w * factor, h * factor), self.score,
                    (self.landmarks - np.array([dx, dy])) * factor, self.detector)


def shrunk(image: Image.Image, max_side: int, resample: Image.Resampling) -> tuple[Image.Image, float]:
    """(the image resized so its longer side is at most max_side pixels, factor from its pixels to the input's)."""
    longest = max(image.size)
    if longest <= max_side:
        return image, 1.0
    factor = longest / max_side
    size = (max(1, round(image.size[0] / factor)), max(1, round(image.size[1] / factor)))
    return image.resize(size, resample, reducing_gap=SHRINK_REDUCING_GAP), factor


def detection_copy(image: Image.Image) -> tuple[np.ndarray, float]:
    """(RGB uint8 array (H, W, 3) of at most DETECTION_MAX_SIDE per side, factor from copy to image pixels)."""
    copy, factor = shrunk(image if image.mode == "RGB" else image.convert("RGB"), DETECTION_MAX_SIDE,
                          DETECTION_RESIZE_FILTER)
    return np.asarray(copy), factor


def with_border(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """The array inside a border of TIGHT_CROP_BORDER of its longer side, filled with its mean colour."""
    border = max(1, round(TIGHT_CROP_BORDER * max(pixels.shape[:2])))
    fill = pixels.reshape(-1, pixels.shape[-1]).mean(axis=0).round().astype(np.uint8)
    padded = np.empty((pixels.shape[0] + 2 * border, pixels.shape[1] + 2 * border, pixels.shape[2]), np.uint8)
    padded[:] = fill
    padded[border:-border, border:-border] = pixels
    return padded, border


def is_credible(score: float, side: float) -> bool:
    """Whether a detection is reported: score 0..1, side = shorter box side in detection-copy pixels."""
    if side >= SMALL_FACE_SIDE:
        return score >= MIN_FACE_SCORE
    return score >= SMALL_FACE_MIN_SCORE and side >= MIN_REPORTED_FACE_SIDE


def is_credible_fallback(score: float, side: float, copy_side: int) -> bool:
    """Whether a BlazeFace detection is reported: score 0..1, side = shorter box side and copy_side = the
    detection copy's longer side, both pixels. As for MTCNN, no face under MIN_REPORTED_FACE_SIDE pixels: in
    thumbnails of 16-20 pixels without people BlazeFace saw 6-11 pixel faces (5 of 200)."""
    return (score >= FALLBACK_MIN_SCORE and side >= FALLBACK_MIN_FACE_SHARE * copy_side
            and side >= MIN_REPORTED_FACE_SIDE)


def has_usable_landmarks(landmarks: np.ndarray) -> bool:
    """Whether a detection's landmarks [n, 2] (pixels, both eyes first) can place a face: all finite and its two
    eyes apart (model.align cannot align a face otherwise). A detection without them is not reported: it could
    not be aligned, and one bad detection must not stop a labelling run."""
    landmarks = np.asarray(landmarks, np.float64)
    return bool(np.isfinite(landmarks).all()) and not np.allclose(landmarks[0], landmarks[1])


def blazeface_face(box: np.ndarray, score: float, keypoints: np.ndarray) -> Face:
    """A BlazeFace detection (box x1, y1, x2, y2; keypoints [6, 2]: eyes, nose tip, mouth centre, ears) as a
    Face, the mouth centre standing for both mouth corners.

    BlazeFace finds faces turned any way, upside down too. The eyes are ordered so that, seen from the first eye
    to the second, the mouth lies to the right-hand side in image coordinates (y down), i.e. below the eyes once
    the face is aligned: an upright face gets its left-of-image eye first, an upside-down one is turned upright
    (ordering by x alone fed such faces to the network upside down, and an upside-down smile reads as sad)."""
    first, second = keypoints[0], keypoints[1]
    across, down = second - first, keypoints[3] - (first + second) / 2
    eyes = np.vstack([first, second] if across[0] * down[1] - across[1] * down[0] >= 0 else [second, first])
    landmarks = np.vstack([eyes, keypoints[2:3], keypoints[3:4], keypoints[3:4]])
    return Face((float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])), score, landmarks,
                BLAZEFACE)


def stable_sort_by_scores(tensor: np.ndarray, scores: np.ndarray, ascending: bool = True) -> np.ndarray:
    """Rows of `tensor` ([boxes, columns]) ordered by `scores` ([boxes]), ties kept in their given order.

    Replaces mtcnn 1.0's `mtcnn.utils.bboxes.sort_by_scores`, which sorts the candidate boxes of a whole batch
    with NumPy's default (unstable) sort: boxes of one image with equal scores (MTCNN's proposal network saturates
    at 1.0 on clear faces) then come out in an order that depends on the other images' boxes, and its order-
    dependent non-maximum suppression keeps a different box. Measured 2026-12-01: 20 of 21 FER2013 crops whose
    rows differed between two identical runs got a different box, score or no face at all depending on their
    batch neighbours; with this sort, none. The descending order is the stable ascending one reversed, as
    mtcnn's own reversal does, so an image alone is searched as before.
    """
    order = np.argsort(scores, kind="stable")
    return tensor[order if ascending else order[::-1]]


class FaceFinder:
    """MTCNN and BlazeFace, built once (MTCNN's three networks load in about a second), called on batches of
    images. Raises model.blazeface.FaceDetectorUnavailable when BlazeFace's model file is missing.

    A face's box does not depend on which other images share its batch (see `stable_sort_by_scores`)."""

    def __init__(self) -> None:
        # Imported here: it builds TensorFlow graphs, which only face finding needs. Renamed: MTCNN in this module
        # is the detector's name in Face.detector.
        from mtcnn import MTCNN as MtcnnDetector
        from mtcnn.utils import bboxes as mtcnn_boxes

        mtcnn_boxes.sort_by_scores = stable_sort_by_scores  # module global, called by its NMS and proposals
        self._detector = MtcnnDetector(stages="face_and_landmarks_detection", device="CPU:0")
        self._fallback = BlazeFace()

    def find(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """The faces in each image (Pillow, any mode, upright), largest first, in that image's pixels.

        Returns one list per image, empty where no face was found. Raises nothing for a faceless image.
        """
        copies = [detection_copy(image) for image in images]
        found = self._detect([pixels for pixels, _ in copies])
        retry = [i for i, faces in enumerate(found) if not faces and min(copies[i][0].shape[:2]) > 1]
        if retry:
            bordered = [with_border(copies[i][0]) for i in retry]
            for i, (pixels, border), faces in zip(retry, bordered, self._detect([p for p, _ in bordered])):
                found[i] = [face.scaled(1.0, (border, border)) for face in faces]
        for i in [i for i in retry if not found[i]]:
            found[i] = self._fallback_faces(copies[i][0])
        return [sorted((face.scaled(factor).clipped(image.size) for face in faces), key=lambda f: -f.area)
                for image, faces, (_, factor) in zip(images, found, copies)]

    def _fallback_faces(self, pixels: np.ndarray) -> list[Face]:
        """BlazeFace's credible faces in an RGB array, each the way up that BlazeFace scores clearly higher.

        BlazeFace finds an upside-down face as an upright one, with its eye keypoints on the mouth (a face pasted
        upside down was labelled sad with p_happy 0.002); in the copy turned half round the same face is upright
        and scores higher. So a face found in the image is taken as found in the turned copy where that copy
        scores it at least TURN_MIN_SCORE_GAIN higher, its keypoints mapped back, which orders its eyes
        (`blazeface_face`) so that alignment turns it upright. The margin keeps upright faces upright: photos are
        upright far more often than not (EXIF orientation is applied before), and for hard faces the two scores
        are close. Faces found in the turned copy alone are not taken: a second search would double the false
        faces in photos without people."""
        height, width = pixels.shape[:2]
        credible = [(box, score, keypoints) for box, score, keypoints in self._fallback(pixels)
                    if is_credible_fallback(score, min(box[2] - box[0], box[3] - box[1]), max(height, width))
                    and has_usable_landmarks(keypoints)]
        if not credible:  # most images asked (photos without people): no face to turn, no second search
            return []
        corner = np.array([width, height], np.float64)
        turned = [(score, np.concatenate([corner - box[2:], corner - box[:2]]), corner - keypoints)
                  for box, score, keypoints in self._fallback(np.ascontiguousarray(pixels[::-1, ::-1]))]
        faces = []
        for box, score, keypoints in credible:
            better = [t for t in turned
                      if t[0] >= score + TURN_MIN_SCORE_GAIN and box_iou(box, t[1][None])[0] > NMS_IOU
                      and has_usable_landmarks(t[2])]
            if better:
                score, box, keypoints = max(better, key=lambda t: t[0])
            faces.append(blazeface_face(box, score, keypoints))
        return faces

    def _detect(self, arrays: list[np.ndarray]) -> list[list[Face]]:
        """MTCNN on arrays grouped by exact size; one list of faces per array, in its own pixels."""
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, pixels in enumerate(arrays):
            groups[pixels.shape[:2]].append(i)
        found: list[list[Face]] = [[] for _ in arrays]
        for members in groups.values():
            rows = self._detector.detect_faces([arrays[i] for i in members], box_format="xyxy",
                                               output_type="numpy", min_face_size=MIN_FACE_SIZE)
            for row in np.asarray(rows, dtype=np.float64).reshape(-1, _LANDMARK_COLUMNS.stop):
                x1, y1, x2, y2 = row[_BOX_COLUMNS]
                landmarks = row[_LANDMARK_COLUMNS].reshape(2, len(LANDMARK_NAMES)).T.copy()
                if not (is_credible(float(row[_SCORE_COLUMN]), min(x2 - x1, y2 - y1))
                        and has_usable_landmarks(landmarks)):
                    continue
                found[members[int(row[0])]].append(
                    Face((x1, y1, x2 - x1, y2 - y1), float(row[_SCORE_COLUMN]), landmarks))
        return found


# Longest side, in pixels, of the image that faces are found in and aligned from: enough for a sharp 48x48 face
# from any face the detector finds, at about a tenth of the memory of a 12 MP photo.
WORKING_MAX_SIDE: int = 1280
WORKING_RESIZE_FILTER = Image.Resampling.LANCZOS


def decode_for_faces(data: bytes) -> DecodedImage:
    """Encoded bytes -> the upright RGB image that faces are found in, at most WORKING_MAX_SIDE per side.

    JPEGs are decoded at reduced scale (see `model.preprocess.decode_image`); `original_size` stays the full
    upright size, so `DecodedImage.scale` converts positions back to the user's pixels. Raises ImageDecodeError.
    """
    decoded = decode_image(data, min_side=DETECTION_MAX_SIDE, colour=True)
    image, _ = shrunk(decoded.image, WORKING_MAX_SIDE, WORKING_RESIZE_FILTER)
    return DecodedImage(image, decoded.original_size)
