"""Evaluate an exported model on a folder-per-class dataset.

Prints accuracy, per-class precision and recall, ROC AUC, calibration error and the confusion matrix, and can
write them as JSON. `--split validation` evaluates only the held-out part of the data set, carved exactly as
the model's trainer carved it (fraction and seed are read from the model's metadata), so the figures recorded
at training time can be reproduced.

    python -m trainer.evaluate --model model/default --data-dir ../shared/data/fer2013/train --split validation

`--model`, `--data-dir` and `--json` may be local or gs:// (through Beam's FileSystems).
"""

import argparse
import json
import sys

import numpy as np

from model.saved import ModelLoadError, load_classifier
from trainer import data as datasets
from trainer import metrics
from trainer.files import local_copy, write_text

SPLITS: tuple[str, ...] = ("all", datasets.TRAIN, datasets.VALIDATION)
BATCH_SIZE: int = 256


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="exported model folder, local or gs://")
    parser.add_argument("--data-dir", required=True,
                        help="folder with one sub-folder of images per class, local or gs://")
    parser.add_argument("--split", choices=SPLITS, default="all",
                        help="evaluate every image, or only the trainer's train/validation part")
    parser.add_argument("--json", dest="json_path", help="also write the metrics to this JSON file, local or gs://")
    return parser.parse_args(argv)


def evaluate(model_dir: str, data_dir: str, split: str = "all") -> dict:
    with local_copy(model_dir) as local_model:  # TensorFlow loads local folders; variables are read at load
        classifier = load_classifier(local_model)
    meta = classifier.metadata
    examples = datasets.list_examples(data_dir, meta.class_names)
    if split != "all":
        trained_on = meta.trained_on
        parts = datasets.split_examples(
            examples,
            trained_on.get("validation_fraction", datasets.DEFAULT_VALIDATION_FRACTION),
            trained_on.get("split_seed", datasets.DEFAULT_SPLIT_SEED))
        examples = parts.validation if split == datasets.VALIDATION else parts.train
    images, labels = datasets.load_arrays(examples)
    probabilities = np.concatenate(
        [classifier(images[i:i + BATCH_SIZE]) for i in range(0, len(images), BATCH_SIZE)]
    ) if len(images) else np.zeros((0, len(meta.class_names)), np.float32)
    predicted = meta.decide(probabilities)
    report = metrics.classification_report(labels, predicted, probabilities, meta.class_names)
    report.update({"model_version": meta.model_version, "data_dir": str(data_dir), "split": split})
    return report


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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = evaluate(args.model, args.data_dir, args.split)
    except (ModelLoadError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json_path:
        write_text(args.json_path, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
