"""Evaluate an exported model on a folder-per-class dataset.

Prints accuracy, per-class precision and recall, ROC AUC, calibration error and the confusion matrix, and can
write them as JSON. Beside the JSON (or into `--figures DIR`) it writes evidence to look at: `evaluation.png`
(confusion matrix, ROC curve, reliability diagram) and `mistakes.html` (the most confident mistakes of each
kind, as the faces the model saw; see `trainer/figures.py`). `--split validation` evaluates only the held-out
part of the data set, carved exactly as the model's trainer carved it (fraction and seed are read from the
model's metadata), so the figures recorded at training time can be reproduced; `--split test` evaluates the part
that a model trained with `--test-fraction` never made a choice on (its final figures).

    python -m trainer.evaluate --model model/default --data-dir ../shared/data/fer2013/train --split validation

`--model`, `--data-dir`, `--json` and `--figures` may be local or gs:// (through Beam's FileSystems). Faces are
taken whole, one pass each, as `--faces none` labels them; `--mirror-average on` averages each with its mirror
image, as the job's default mode does (model.mirror).
"""

# First: TensorFlow starts here with its C++ start-up noise filtered (see model/console.py).
from model import console  # isort: skip

import argparse
import dataclasses
import json
import sys

import numpy as np
from apache_beam.io.filesystems import FileSystems

from model.metadata import RULE_THRESHOLD, ModelMetadata
from model.mirror import MIRROR_AUTO, MIRROR_SETTINGS, mirror_wanted, served
from model.saved import Classifier, ModelLoadError, load_classifier
from trainer import data as datasets
from trainer import figures, metrics
from trainer.files import check_reachable, is_folder, local_copy, write_text

SPLITS: tuple[str, ...] = ("all", datasets.TRAIN, datasets.VALIDATION, datasets.TEST)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = console.OneLineParser(
        prog="python -m trainer.evaluate",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--model", required=True, help="exported model folder, local or gs://")
    parser.add_argument("--data-dir", required=True,
                        help="folder with one sub-folder of images per class, local or gs://")
    parser.add_argument("--split", choices=SPLITS, default="all",
                        help="evaluate every image, or only the trainer's train, validation or test part")
    parser.add_argument("--json", dest="json_path", help="also write the metrics to this JSON file, local or gs://")
    parser.add_argument("--figures", metavar="DIR",
                        help=f"write {figures.PNG_FILENAME} and {figures.HTML_FILENAME} into this folder, local or "
                             "gs:// (default: the folder of --json; without either, no figures)")
    parser.add_argument("--top-mistakes", type=int, default=figures.TOP_MISTAKES,
                        help="most confident mistakes of each kind shown in the HTML page")
    parser.add_argument("--bootstrap", type=int, default=metrics.BOOTSTRAP_RESAMPLES, metavar="N",
                        help=f"resamples for the {round(metrics.BOOTSTRAP_LEVEL * 100)}%% intervals of accuracy, ROC AUC and "
                             f"recall (percentile bootstrap over the images; 0: none; default %(default)s)")
    parser.add_argument("--mirror-average", choices=MIRROR_SETTINGS, default=MIRROR_AUTO,
                        help="as the job's flag; 'auto' (default): off, as faces are taken whole without face "
                             "finding; 'on': each face averaged with its mirror image")
    return parser.parse_args(argv)


@dataclasses.dataclass
class Predictions:
    """What the model said about each evaluated image, in the order of `paths`."""

    metadata: ModelMetadata
    paths: list[str]
    images: np.ndarray  # float32 [n, 48, 48, 1], as the model saw them
    labels: np.ndarray  # true class index [n]
    probabilities: np.ndarray  # [n, classes]
    predicted: np.ndarray  # class index chosen by the metadata's decision rule [n]
    # The data folder's name as recorded in reports: the name the model's metadata gives the faces it was trained
    # on when the folder holds exactly those faces (same listing digest, whatever the path), else its last part.
    data_name: str


def predict(model_dir: str, data_dir: str, split: str = "all", mirror_average: bool = False) -> Predictions:
    """Run the model on every image of the split (with mirror_average, as model.mirror serves it)."""
    with local_copy(model_dir) as local_model:  # TensorFlow loads local folders; variables are read at load
        classifier = served(load_classifier(local_model), mirror_average)
    return predict_with(classifier, datasets.list_examples(data_dir, classifier.metadata.class_names), data_dir,
                        split)


def predict_with(classifier: Classifier, listed: list[datasets.Example], data_dir: str,
                 split: str = "all") -> Predictions:
    """predict() with the model already loaded and data_dir already listed (every face in it)."""
    meta = classifier.metadata
    examples = listed
    if split != "all":
        try:
            parts = datasets.split_as_trained(listed, meta.trained_on)
        except ValueError as err:
            raise ValueError(f"--split {split} of {data_dir}: {err} (--split all)") from None
        if split == datasets.VALIDATION and meta.trained_on.get(datasets.REFIT_KEY):
            raise ValueError(f"model {meta.model_version} is a refit of {meta.trained_on[datasets.REFIT_KEY]}: it "
                             "trained on that run's validation faces (--split test)")
        if split == datasets.TEST and not parts.test:
            raise ValueError(f"model {meta.model_version} was trained without a test split (see --test-fraction)")
        examples = parts.part(split)
    if not examples:
        raise ValueError(f"no images to evaluate in {data_dir}" + ("" if split == "all" else f" ({split} split)"))
    images, labels = datasets.load_arrays(examples, meta.aligned_crops)
    probabilities = classifier.in_batches(images)
    trained_on = meta.trained_on or {}
    same_faces = trained_on.get("data_dir") and trained_on.get("data_digest") == datasets.listing_digest(listed)
    data_name = trained_on["data_dir"] if same_faces else datasets.folder_name(data_dir)
    return Predictions(meta, [e.path for e in examples], images, labels, probabilities, meta.decide(probabilities),
                       data_name)


def report_of(predictions: Predictions, split: str, bootstrap: int = 0) -> dict:
    """The metrics dictionary printed and written as JSON; with bootstrap > 0, also "intervals" (see
    `metrics.bootstrap_intervals`), how far the figures could move on other faces drawn the same way.

    "data_dir" is `Predictions.data_name`, never a path: the faces a model was trained on, evaluated through any
    path or folder name, write the same report, and no machine's paths end up in a committed evaluation.json."""
    meta = predictions.metadata
    report = metrics.classification_report(predictions.labels, predictions.predicted, predictions.probabilities,
                                           meta.class_names)
    report.update({"model_version": meta.model_version, "data_dir": predictions.data_name, "split": split})
    if bootstrap > 0:
        report["intervals"] = metrics.bootstrap_intervals(predictions.labels, predictions.predicted,
                                                          predictions.probabilities, meta.class_names, bootstrap)
    return report


def evaluate(model_dir: str, data_dir: str, split: str = "all") -> dict:
    """report_of() the model in model_dir on a split of data_dir, without intervals. Raises ModelLoadError,
    FileNotFoundError or ValueError (one line each) as predict() does."""
    return report_of(predict(model_dir, data_dir, split), split)


def decision_text(meta: ModelMetadata) -> str:
    """The decision rule in words, e.g. 'happy when p_happy >= 0.300'."""
    if meta.decision_rule == RULE_THRESHOLD:
        return f"{meta.positive_class} when p_{meta.positive_class} >= {meta.threshold:.3f}"
    return "most probable class"


def figures_folder(args: argparse.Namespace) -> str | None:
    """--figures, else the folder of --json ('.' for a bare file name), else None."""
    if args.figures:
        return args.figures
    if args.json_path:
        return FileSystems.split(args.json_path)[0] or "."
    return None


def format_report(report: dict) -> str:
    names = report["confusion_matrix"]["rows_true_cols_predicted"]
    lines = [
        f"model {report['model_version']} on {report['data_dir']} ({report['split']}): {report['images']} images",
        f"accuracy {report['accuracy']:.4f}   ROC AUC {report['roc_auc']:.4f}   ECE {report['ece']:.4f}",
    ]
    for name, stats in report["per_class"].items():
        lines.append(f"  {name:>8}: precision {stats['precision']:.4f}  recall {stats['recall']:.4f}  "
                     f"support {stats['support']}")
    lines.append("confusion matrix (rows true, columns predicted): " + " ".join(names))
    for name, row in zip(names, report["confusion_matrix"]["counts"]):
        lines.append(f"  {name:>8}: " + " ".join(f"{count:>6}" for count in row))
    intervals = report.get("intervals")
    if intervals:
        def span(bounds: list[float]) -> str:
            return f"{bounds[0]:.4f}-{bounds[1]:.4f}" if bounds else "n/a"

        lines.append(f"{intervals['level']:.0%} intervals (bootstrap, {intervals['resamples']} resamples): "
                     f"accuracy {span(intervals['accuracy'])}   ROC AUC {span(intervals['roc_auc'])}   "
                     + "   ".join(f"{name} recall {span(b)}" for name, b in intervals["recall"].items()))
        fewest = min(stats["support"] for stats in report["per_class"].values())
        if fewest < metrics.BOOTSTRAP_MIN_SUPPORT:
            lines.append(f"  (a class has only {fewest} images: intervals from so few are too narrow to trust)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.top_mistakes < 0:
        print("error: --top-mistakes must be 0 or more", file=sys.stderr)
        return console.USAGE_ERROR_STATUS
    if args.bootstrap < 0 or 0 < args.bootstrap < metrics.BOOTSTRAP_MIN_RESAMPLES:
        print(f"error: --bootstrap must be 0 (no intervals) or at least {metrics.BOOTSTRAP_MIN_RESAMPLES}",
              file=sys.stderr)
        return console.USAGE_ERROR_STATUS
    try:
        if args.json_path and is_folder(args.json_path):
            raise FileNotFoundError(f"--json {args.json_path} is a folder: name the JSON file to write")
        for folder in {FileSystems.split(args.json_path)[0] if args.json_path else None, figures_folder(args)}:
            if folder is not None:
                check_reachable(folder)  # an unwritable --json or --figures fails before the evaluation
        predictions = predict(args.model, args.data_dir, args.split, mirror_wanted(args.mirror_average, False))
    except (ModelLoadError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return console.USAGE_ERROR_STATUS
    report = report_of(predictions, args.split, args.bootstrap)
    print(format_report(report))
    if args.json_path:
        write_text(args.json_path, json.dumps(report, indent=2) + "\n")
    folder = figures_folder(args)
    if folder is not None:
        meta = predictions.metadata
        written = figures.write_figures(
            folder, predictions.images, predictions.labels, predictions.probabilities, predictions.predicted,
            predictions.paths, meta.class_names,
            title=f"{meta.model_version} on {predictions.data_name} ({args.split}, {report['images']:,} images)",
            rule=decision_text(meta), top=args.top_mistakes)
        print("figures: " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
