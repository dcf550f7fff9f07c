"""Measure where the eyes sit in FER2013 faces: the alignment template of `model.align`.

Runs the face detector (`model.faces`) on FER2013 training faces, as the labelling job would, and prints the
median (x, y) of both eye landmarks in 48x48 face pixels with their spread and the share of faces found.

    python -m trainer.face_template --data-dir ../shared/data/fer2013/train --faces 2000
"""

# First: TensorFlow starts here with its C++ start-up noise filtered (see model/console.py).
from model import console  # isort: skip

import io
import sys

import numpy as np
from PIL import Image

from model.faces import MTCNN, FaceFinder
from trainer.data import TRAIN, list_examples, split_examples

DEFAULT_FACES: int = 2000
SAMPLE_SEED: int = 0
BATCH: int = 64
QUARTILES: tuple[int, int] = (25, 75)


def eye_positions(contents: list[bytes]) -> tuple[np.ndarray, int]:
    """(eyes float [found, 4] as left x, left y, right x, right y in image pixels, number of images searched);
    faces found by MTCNN only, as the template was measured before the second detector."""
    finder = FaceFinder()
    eyes = []
    for start in range(0, len(contents), BATCH):
        images = [Image.open(io.BytesIO(c)).convert("L") for c in contents[start:start + BATCH]]
        for faces in finder.find(images):
            if faces and faces[0].detector == MTCNN:  # the second detector's eyes are rougher (turned faces)
                eyes.append(np.concatenate(faces[0].eyes))
    return np.array(eyes).reshape(-1, 4), len(contents)


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
    eyes, searched = eye_positions([train[i].content for i in sorted(chosen)])
    median = np.median(eyes, axis=0)
    low, high = np.percentile(eyes, QUARTILES, axis=0)
    print(f"faces found: {len(eyes)} of {searched} ({100 * len(eyes) / searched:.1f}%)")
    for name, column in (("left eye", slice(0, 2)), ("right eye", slice(2, 4))):
        print(f"{name}: median ({median[column][0]:.2f}, {median[column][1]:.2f}); quartiles x "
              f"{low[column][0]:.1f}-{high[column][0]:.1f}, y {low[column][1]:.1f}-{high[column][1]:.1f}")
    level = (median[1] + median[3]) / 2  # both eyes at their mean height: the template face is not tilted
    print(f"TEMPLATE_EYES = (({median[0]:.1f}, {level:.1f}), ({median[2]:.1f}, {level:.1f}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
