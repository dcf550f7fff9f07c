"""Measure test-time views (single face, mirror averaging, mirror + small shifts) on a trained model, no retraining.

Why: the exported model averages each face with its mirror image, which doubles the cost of inference. This tool
says what that buys on the validation split, and whether more views (shifted copies) would buy more, so the
choice is made by measurement.

Workflow:
1. Rebuild the network from the model's `facelabel.json` and copy in the SavedModel's trained variables
   (matched by name), so the bare network's logits are available one view at a time.
2. Carve the same validation split the trainer carved (fraction and seed from the metadata).
3. For each view set, average the logits over the views, fit a temperature and a threshold on the split as the
   trainer does, and report accuracy, ROC AUC, sad recall, ECE and network passes per face.

    python -m trainer.views --model model/default --data-dir ../shared/data/fer2013/train --json /tmp/views.json

Note that the temperature and threshold are fitted and scored on the same split, exactly as recorded for the
shipped model; the comparison between view sets is fair, the absolute numbers are the training-time ones.
"""

# First: TensorFlow starts here with its C++ start-up noise filtered (see model/console.py).
from model import console  # isort: skip

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from model.contract import CLASS_NAMES
from model.metadata import METADATA_FILENAME, ModelMetadata
from model.network import BACKBONE_NONE, build_network
from model.saved import ModelLoadError, load_classifier
from trainer import data as datasets
from trainer import metrics

SHIFT_PIXELS: int = 2  # a small shift: faces in FER2013 are roughly registered, big shifts cut features off
BATCH_SIZE: int = 256
HEIGHT_AXIS, WIDTH_AXIS = 1, 2  # images are [batch, height, width, channels]
# (dy, dx, mirrored) for every view a set may use.
VIEWS: dict[str, tuple[int, int, bool]] = {
    "face": (0, 0, False), "mirror": (0, 0, True),
    "up": (-SHIFT_PIXELS, 0, False), "down": (SHIFT_PIXELS, 0, False),
    "left": (0, -SHIFT_PIXELS, False), "right": (0, SHIFT_PIXELS, False),
    "mirror_up": (-SHIFT_PIXELS, 0, True), "mirror_down": (SHIFT_PIXELS, 0, True),
    "mirror_left": (0, -SHIFT_PIXELS, True), "mirror_right": (0, SHIFT_PIXELS, True),
}
VIEW_SETS: dict[str, tuple[str, ...]] = {
    "single view": ("face",),
    "face + mirror (shipped)": ("face", "mirror"),
    "face + 4 shifts": ("face", "up", "down", "left", "right"),
    "face + mirror, each + 4 shifts": tuple(VIEWS),
}


# With --ensemble-with: both networks' logits averaged over these views.
ENSEMBLE_VIEW_SETS: dict[str, tuple[str, ...]] = {
    "2 networks, single view each": ("face",),
    "2 networks, face + mirror each": ("face", "mirror"),
}


def shifted(images: np.ndarray, dy: int, dx: int, mirrored: bool) -> np.ndarray:
    """The images moved by (dy, dx) pixels, edges repeated, optionally mirrored left-right first."""
    if mirrored:
        images = images[:, :, ::-1, :]
    if dy == 0 and dx == 0:
        return np.ascontiguousarray(images)
    pad = max(abs(dy), abs(dx))
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    height, width = images.shape[HEIGHT_AXIS], images.shape[WIDTH_AXIS]
    top, left = pad - dy, pad - dx
    return np.ascontiguousarray(padded[:, top:top + height, left:left + width, :])


def trained_network(model_dir: str) -> tuple[tf.keras.Model, ModelMetadata]:
    """The bare network of an exported model, with its trained weights (variables matched by name)."""
    classifier = load_classifier(model_dir)
    meta = classifier.metadata
    config = meta.training_config
    if config.get("backbone", BACKBONE_NONE) != BACKBONE_NONE:
        raise ValueError("only the from-scratch network can be rebuilt here (backbone models: not supported)")
    if "block_filters" not in config or "dropout" not in config:
        raise ValueError(f"{METADATA_FILENAME} does not record the network's shape (training_config.block_filters, "
                         "dropout): only models exported by trainer.task can be rebuilt")
    network = build_network(len(meta.class_names), tuple(config["block_filters"]), config["dropout"])
    saved = {v.name.split(":")[0]: v for v in classifier.signature.variables}
    missing = [w.path for w in network.weights if w.path not in saved]
    if missing:
        raise ValueError(f"the SavedModel lacks {len(missing)} of the network's variables, e.g. {missing[0]}")
    for weight in network.weights:
        weight.assign(saved[weight.path].numpy())
    return network, meta


def view_logits(network: tf.keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    """Logits of every view in VIEWS for every image."""
    predict = tf.function(lambda x: network(x, training=False))
    return {name: np.concatenate([predict(shifted(images[i:i + BATCH_SIZE], *spec)).numpy()
                                  for i in range(0, len(images), BATCH_SIZE)])
            for name, spec in VIEWS.items()}


def score(labels: np.ndarray, logits: np.ndarray) -> dict:
    """Metrics of averaged logits, with temperature and threshold fitted as the trainer fits them."""
    temperature, threshold, report = metrics.calibrated_report(labels, logits, CLASS_NAMES)
    return {"accuracy": report["accuracy"], "accuracy_at_0.5": report["accuracy_at_0.5"],
            "roc_auc": report["roc_auc"], "sad_recall": report["per_class"][CLASS_NAMES[-1]]["recall"],
            "ece": report["ece"], "temperature": temperature, "threshold": threshold}


def compare(model_dir: str, data_dir: str, ensemble_with: str | None = None) -> dict:
    """Scores of every view set; with `ensemble_with`, also of the two networks' logits averaged."""
    network, meta = trained_network(model_dir)
    parts = datasets.split_as_trained(datasets.list_examples(data_dir, meta.class_names), meta.trained_on)
    images, labels = datasets.load_arrays(parts.validation, meta.aligned_crops)
    logits = view_logits(network, images)
    results = {name: {"passes_per_face": len(views),
                      **score(labels, np.mean([logits[v] for v in views], axis=0))}
               for name, views in VIEW_SETS.items()}
    if ensemble_with:
        other, other_meta = trained_network(ensemble_with)
        if other_meta.trained_on.get("split") != meta.trained_on.get("split"):
            raise ValueError("the two models were not trained on the same split: their ensemble cannot be scored")
        other_logits = view_logits(other, images)
        for name, views in ENSEMBLE_VIEW_SETS.items():
            averaged = np.mean([logits[v] for v in views] + [other_logits[v] for v in views], axis=0)
            results[name] = {"passes_per_face": 2 * len(views), **score(labels, averaged)}
    return {"model_version": meta.model_version, "validation_images": int(len(labels)),
            "shift_pixels": SHIFT_PIXELS, "view_sets": results}


def format_table(result: dict) -> str:
    lines = [f"{result['model_version']}: {result['validation_images']} validation faces",
             f"{'views':<34} {'passes':>6} {'acc':>7} {'acc@0.5':>8} {'AUC':>7} {'sad rec':>8} {'ECE':>7}"]
    for name, r in result["view_sets"].items():
        lines.append(f"{name:<34} {r['passes_per_face']:>6} {r['accuracy']:>7.4f} {r['accuracy_at_0.5']:>8.4f} "
                     f"{r['roc_auc']:>7.4f} {r['sad_recall']:>8.4f} {r['ece']:>7.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = console.OneLineParser(
        prog="python -m trainer.views",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--model", required=True, help="exported model folder (local)")
    parser.add_argument("--data-dir", required=True, help="the folder-per-class data the model was trained on")
    parser.add_argument("--ensemble-with", metavar="MODEL",
                        help="a second model trained on the same split: also score the two averaged")
    parser.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    try:
        result = compare(args.model, args.data_dir, args.ensemble_with)
    except (ModelLoadError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return console.USAGE_ERROR_STATUS
    print(format_table(result))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
