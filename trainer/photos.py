"""Evaluate the labelling job's face path on photos: found, aligned and labelled as `pipeline/` does.

Three checks, each printed and written as JSON:
- `--data-dir`: a folder with one sub-folder per class of real face photos (e.g. muxspace): accuracy, ROC AUC,
  sad and happy recall and balanced accuracy of the largest face's label, an image without a face counting as
  wrong (p_happy 0.5 for the AUC);
- `--faceless`: folders of photos without people: the share that comes out `no_face`;
- `--composites`: FER2013 validation faces (the model's own split; its test split if it has one, which is the
  validation split of models trained without one, so models are compared on the same faces) pasted into 640x480
  scenes at a random position, a third of the height, turned by up to 15 degrees: the share given the bare face's
  label; and the same validation faces as they are, in the default mode: the figures of `--data-dir`.
Faces are averaged with their mirror images as the job does where it finds faces (`--mirror-average auto`,
model.mirror); `--mirror-average off` measures the single pass.

    python -m trainer.photos --model model/default --data-dir ../shared/data/muxspace \\
        --faceless ../shared/data/no-faces/scenes --composites ../shared/data/fer2013/train
"""

# First: TensorFlow starts here with its C++ start-up noise filtered (see model/console.py).
from model import console  # isort: skip

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from model.align import find_face_inputs
from model.contract import CLASS_NAMES, is_image_path
from model.faces import FaceFinder, decode_for_faces
from model.mirror import MIRROR_AUTO, MIRROR_SETTINGS, answers_averaged, mirror_wanted, served
from model.preprocess import ImageDecodeError
from model.saved import Classifier, ModelLoadError, load_classifier
from trainer.data import Example, list_examples, load_arrays, split_as_trained
from trainer.metrics import roc_auc

BATCH: int = 32
SCENE_SIZE: tuple[int, int] = (640, 480)
FACE_HEIGHT_SHARE: float = 1 / 3
MAX_TURN_DEGREES: float = 15.0
COMPOSITE_SEED: int = 2026
UNDECIDED: float = 0.5


def largest_face_probabilities(classifier: Classifier, finder: FaceFinder, contents: list[bytes],
                               unreadable: list[int] | None = None) -> np.ndarray:
    """p_<first class> of each image's largest face as the job computes it; NaN where no face or unreadable (the
    indexes of unreadable images are appended to `unreadable` when given)."""
    out = np.full(len(contents), np.nan)
    for start in range(0, len(contents), BATCH):
        decoded = []
        for i, data in enumerate(contents[start:start + BATCH]):
            try:
                decoded.append((start + i, decode_for_faces(data)))
            except ImageDecodeError:
                if unreadable is not None:
                    unreadable.append(start + i)
        chosen = find_face_inputs(finder, [d.image for _, d in decoded], all_faces=False,
                                  aligned_crops=classifier.metadata.aligned_crops)
        inputs = [(i, largest[0].pixels) for (i, _), largest in zip(decoded, chosen) if largest]
        if inputs:
            out[[i for i, _ in inputs]] = classifier(np.stack([p for _, p in inputs]))[:, 0]
    return out


def photo_metrics(classifier: Classifier, finder: FaceFinder, data_dir: str) -> dict:
    """scored() of the folder's photos in the default mode (unreadable ones count as wrong, as no face does).
    Raises ValueError for a folder without images."""
    examples = list_examples(data_dir)
    if not examples:
        raise ValueError(f"no images in the class folders of {data_dir}")
    return labelled_in_default_mode(classifier, finder, examples)


def scored(classifier: Classifier, labels: np.ndarray, p_first: np.ndarray, unreadable: list[int] = ()) -> dict:
    """Accuracy, ROC AUC, sad and happy recall and balanced accuracy (their mean over the classes the folder
    holds, which its share of happy faces does not move) of p_<first class> (NaN: no face or unreadable, counted
    wrong, 0.5 for the AUC); "no_face" and "unreadable" count the two kinds of NaN apart (unreadable: indexes into
    labels)."""
    chosen = classifier.metadata.decide(np.stack([p_first, 1 - p_first], axis=1))
    found = ~np.isnan(p_first)
    correct = found & (chosen == labels)
    sad = CLASS_NAMES.index("sad")
    recall = {name: float((correct & (labels == index)).sum() / (labels == index).sum())
              for index, name in enumerate(CLASS_NAMES) if (labels == index).any()}  # classes the folder holds
    return {"images": len(labels), "no_face": int((~found).sum()) - len(unreadable), "unreadable": len(unreadable),
            "accuracy": round(float(correct.mean()), 4),
            "roc_auc": round(roc_auc(labels == sad, 1 - np.where(found, p_first, UNDECIDED)), 4),
            "sad_recall": round(recall.get("sad", 0.0), 4), "happy_recall": round(recall.get("happy", 0.0), 4),
            "balanced_accuracy": round(float(np.mean(list(recall.values()))), 4)}


def faceless_share(classifier: Classifier, finder: FaceFinder, folders: list[str]) -> dict:
    """Share of the readable images in `folders` in which no face is found; unreadable ones are listed apart.
    Raises ValueError when the folders hold no readable image."""
    paths = sorted(p for folder in folders for p in Path(folder).rglob("*") if is_image_path(str(p)))
    unreadable: list[int] = []
    p_first = largest_face_probabilities(classifier, finder, [p.read_bytes() for p in paths], unreadable)
    readable = len(paths) - len(unreadable)
    if not readable:
        raise ValueError(f"no readable images in {', '.join(folders)}")
    labelled = [str(p) for p, value in zip(paths, p_first) if not np.isnan(value)]
    return {"images": readable, "no_face_share": round(1 - len(labelled) / readable, 4),
            "given_a_label": labelled, "unreadable": [str(paths[i]) for i in unreadable]}


def composite(face: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The face (enlarged to a third of the scene's height, turned) pasted at a random place in a blotchy scene."""
    coarse = rng.integers(40, 220, (6, 8, 3), dtype=np.uint8)
    scene = Image.fromarray(coarse, mode="RGB").resize(SCENE_SIZE, Image.Resampling.BICUBIC)
    height = round(SCENE_SIZE[1] * FACE_HEIGHT_SHARE)
    enlarged = face.convert("RGB").resize((height, height), Image.Resampling.BICUBIC)
    angle = rng.uniform(-MAX_TURN_DEGREES, MAX_TURN_DEGREES)
    turned = enlarged.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    mask = Image.new("L", enlarged.size, 255).rotate(angle, Image.Resampling.BICUBIC, expand=True)
    x = int(rng.integers(0, SCENE_SIZE[0] - turned.size[0] + 1))
    y = int(rng.integers(0, SCENE_SIZE[1] - turned.size[1] + 1))
    scene.paste(turned, (x, y), mask)
    return scene


def composite_agreement(classifier: Classifier, finder: FaceFinder, data_dir: str) -> dict:
    import io

    try:
        parts = split_as_trained(list_examples(data_dir), classifier.metadata.trained_on)
    except ValueError as err:
        raise ValueError(f"--composites {data_dir}: {err}") from None
    validation = parts.test or parts.validation  # faces no choice was made on, where the model has such a split
    if not validation:
        raise ValueError(f"the model's held-out split of {data_dir} has no faces")
    bare_faces, _ = load_arrays(validation, classifier.metadata.aligned_crops)  # as the model is scored on them
    bare = classifier.metadata.decide(classifier(bare_faces))
    rng = np.random.default_rng(COMPOSITE_SEED)
    contents = []
    for example in validation:
        buffer = io.BytesIO()
        composite(Image.open(io.BytesIO(example.content)), rng).save(buffer, format="JPEG", quality=92)
        contents.append(buffer.getvalue())
    p_first = largest_face_probabilities(classifier, finder, contents)
    found = ~np.isnan(p_first)
    chosen = classifier.metadata.decide(np.stack([p_first, 1 - p_first], axis=1))
    return {"composites": len(contents), "face_found": round(float(found.mean()), 4),
            "same_label_as_bare_face": round(float((found & (chosen == bare)).mean()), 4),
            "validation_default_mode": labelled_in_default_mode(classifier, finder, validation)}


def labelled_in_default_mode(classifier: Classifier, finder: FaceFinder, examples: list[Example]) -> dict:
    """scored() of the images as they are, each through the job's default mode (its largest face)."""
    unreadable: list[int] = []
    p_first = largest_face_probabilities(classifier, finder, [e.content for e in examples], unreadable)
    return scored(classifier, np.array([e.label for e in examples]), p_first, unreadable)


def main(argv: list[str] | None = None) -> int:
    parser = console.OneLineParser(
        prog="python -m trainer.photos",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--model", required=True, help="exported facelabel model folder")
    parser.add_argument("--data-dir", help="folder with one sub-folder per class of face photos")
    parser.add_argument("--faceless", nargs="*", default=[], help="folders of photos without faces")
    parser.add_argument("--composites", help="FER2013 data folder the model was trained on (for its split)")
    parser.add_argument("--mirror-average", choices=MIRROR_SETTINGS, default=MIRROR_AUTO,
                        help="as the job's flag; 'auto' (default): on, as every check here finds faces")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if not (args.data_dir or args.faceless or args.composites):
        parser.error("nothing to check: give --data-dir, --faceless and/or --composites")
    missing = [folder for folder in args.faceless if not Path(folder).is_dir()]
    if missing:
        print(f"error: faceless folder not found: {missing[0]}", file=sys.stderr)
        return console.USAGE_ERROR_STATUS
    try:
        classifier = served(load_classifier(args.model), mirror_wanted(args.mirror_average, True))
        finder = FaceFinder()
        results = {"model_version": classifier.metadata.model_version,
                   "mirror_average": answers_averaged(classifier.metadata)}
        print("model:", json.dumps(results), flush=True)
        if args.data_dir:
            results["photos"] = photo_metrics(classifier, finder, args.data_dir)
            print("photos:", json.dumps(results["photos"]), flush=True)
        if args.faceless:
            results["faceless"] = faceless_share(classifier, finder, args.faceless)
            print("faceless:", json.dumps(results["faceless"]), flush=True)
        if args.composites:
            results["composites"] = composite_agreement(classifier, finder, args.composites)
            print("composites:", json.dumps(results["composites"]), flush=True)
    except (ModelLoadError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return console.USAGE_ERROR_STATUS
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
