"""Measure where the eyes and the mouth sit in FER2013 faces: the alignment template of `model.align`.

Runs the face detector (`model.faces`) on FER2013 training faces, as the labelling job would, and prints the
median (x, y) of its five landmarks in 48x48 face pixels with their spread, the share of faces found, and
`model.align.TEMPLATE_LANDMARKS` made from them (both eyes and the mouth's centre, each pair levelled).

    python -m trainer.face_template --data-dir ../shared/data/fer2013/train --faces 2000
"""

# First: TensorFlow starts here with its C++ start-up noise filtered (see model/console.py).
from model import console  # isort: skip

import io
import sys

import numpy as np
from PIL import Image

from model.faces import LANDMARK_NAMES, MTCNN, FaceFinder
from trainer.data import TRAIN, list_examples, split_examples

DEFAULT_FACES: int = 2000
SAMPLE_SEED: int = 0
BATCH: int = 64
QUARTILES: tuple[int, int] = (25, 75)


def landmark_positions(contents: list[bytes]) -> tuple[np.ndarray, int]:
    """(landmarks float [found, 5, 2] of (x, y) in image pixels, in model.faces.LANDMARK_NAMES order, number of
    images searched); faces found by MTCNN only: the second detector's landmarks are rougher (turned faces) and
    give the mouth's centre, not its corners."""
    finder = FaceFinder()
    landmarks = []
    for start in range(0, len(contents), BATCH):
        images = [Image.open(io.BytesIO(c)).convert("L") for c in contents[start:start + BATCH]]
        for faces in finder.find(images):
            if faces and faces[0].detector == MTCNN:
                landmarks.append(faces[0].landmarks)
    return np.array(landmarks).reshape(-1, len(LANDMARK_NAMES), 2), len(contents)


def template(median: np.ndarray) -> tuple[tuple[float, float], ...]:
    """TEMPLATE_LANDMARKS from the median landmarks [5, 2] (pixels): both eyes, levelled to their mean height so
    the template face is not tilted, and the mouth's centre, the mean of its two corners."""
    eye_y = (median[0, 1] + median[1, 1]) / 2
    mouth = (median[3] + median[4]) / 2
    return ((median[0, 0], eye_y), (median[1, 0], eye_y), (mouth[0], mouth[1]))


def main(argv: list[str] | None = None) -> int:
    parser = console.OneLineParser(
        prog="python -m trainer.face_template",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--data-dir", required=True, help="folder with one sub-folder per class (FER2013 faces)")
    parser.add_argument("--faces", type=int, default=DEFAULT_FACES, help="how many training faces to measure")
    args = parser.parse_args(argv)
    train = split_examples(list_examples(args.data_dir)).__dict__[TRAIN]
    rng = np.random.default_rng(SAMPLE_SEED)
    chosen = rng.choice(len(train), min(args.faces, len(train)), replace=False)
    landmarks, searched = landmark_positions([train[i].content for i in sorted(chosen)])
    median = np.median(landmarks, axis=0)
    low, high = np.percentile(landmarks, QUARTILES, axis=0)
    print(f"faces found: {len(landmarks)} of {searched} ({100 * len(landmarks) / searched:.1f}%)")
    for name, (x, y), (x_low, y_low), (x_high, y_high) in zip(LANDMARK_NAMES, median, low, high):
        print(f"{name}: median ({x:.2f}, {y:.2f}); quartiles x {x_low:.1f}-{x_high:.1f}, y {y_low:.1f}-{y_high:.1f}")
    points = ", ".join(f"({x:.2f}, {y:.2f})" for x, y in template(median))
    print(f"TEMPLATE_LANDMARKS = ({points})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
