"""Reduced-precision exports of a trained model: do they keep its answers, and are they faster on this CPU?

TensorFlow's reduced-precision inference on CPU is TensorFlow Lite (a SavedModel itself runs in float32 here).
This converts the model's serving signature (mirror averaging, temperature and softmax included, its variables
frozen to constants) four ways with `tf.lite.TFLiteConverter`, following TensorFlow's post-training
quantization guide (https://www.tensorflow.org/lite/performance/post_training_quantization):
- `float32`: no quantization (checks the conversion itself);
- `float16`: weights stored as float16, computed in float32;
- `dynamic`: weights int8, activations quantized on the fly;
- `int8`: weights and activations int8, activation ranges calibrated on REPRESENTATIVE_FACES faces of the model's
  own training split (so `--data-dir` must be the folder it was trained on; with `--split validation` or `test`
  none of the calibration faces is evaluated); float32 input and output, so the signature is unchanged.
Each is scored on the evaluated split against the SavedModel's own answers (accuracy, ROC AUC, sad recall, ECE,
labels that change) and timed in the plain loop (faces [256, 48, 48, 1] per call, median of TIMED_RUNS; the
interpreter (LiteRT, `model.lite`) with `--threads` threads, the SavedModel with TensorFlow's default, every core).

`--write` keeps the int8 conversion: it is stored in the (local) model folder as `model.lite.INT8_FILENAME`, and
its SHA-256 and figures on the evaluated split under `int8` in the model's metadata, for `pipeline.run --precision
int8` (which refuses a copy whose digest is not the recorded one).

    python -m trainer.quantize --model model/default --data-dir ../shared/data/fer2013/train --split validation
"""

# First: TensorFlow starts here with its C++ start-up noise filtered (see model/console.py).
from model import console  # isort: skip

import dataclasses
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from model.contract import INPUT_SHAPE, SERVING_SIGNATURE
from model.lite import INT8_FILENAME, LiteClassifier, flatbuffer_digest
from model.metadata import ModelMetadata
from model.saved import PREDICT_BATCH_SIZE, Classifier, ModelLoadError, load_classifier, predict_in_batches
from trainer import data as datasets
from trainer import evaluate, metrics
from trainer.files import is_local, local_copy, write_text

VARIANTS: tuple[str, ...] = ("float32", "float16", "dynamic", "int8")
REPRESENTATIVE_FACES: int = 500
REPRESENTATIVE_SEED: int = 0
TIMED_RUNS: int = 5
# What the converter prints natively on every conversion: nothing a user acts on.
LITE_NOISE = re.compile(r"fully_quantize: \d+, inference_type")


def convert(model_dir: str, variant: str, representative: np.ndarray) -> bytes:
    """The model's serving signature as a TensorFlow Lite flatbuffer of the given VARIANTS kind; representative:
    float32 [n, 48, 48, 1] faces of 0..255 for the int8 calibration."""
    loaded = tf.saved_model.load(model_dir)
    frozen = convert_variables_to_constants_v2(loaded.signatures[SERVING_SIGNATURE])  # temperature: a variable
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], loaded)
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        converter.representative_dataset = lambda: ([face[np.newaxis]] for face in representative)
        # int8 kernels wherever TensorFlow Lite has them, float ones for any op it has not.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def faces_per_second(predict) -> float:
    """Median faces/s of predict on PREDICT_BATCH_SIZE random faces, over TIMED_RUNS calls after a warm-up."""
    faces = np.random.default_rng(1).uniform(0, 255, (PREDICT_BATCH_SIZE, *INPUT_SHAPE)).astype(np.float32)
    predict(faces)
    seconds = []
    for _ in range(TIMED_RUNS):
        started = time.perf_counter()
        predict(faces)
        seconds.append(time.perf_counter() - started)
    return PREDICT_BATCH_SIZE / statistics.median(seconds)


def compare(model_dir: str, data_dir: str, split: str, threads: int) -> tuple[dict, bytes]:
    """Scores, size and speed of the SavedModel and of each VARIANTS conversion on the split's faces; and the
    int8 flatbuffer."""
    with local_copy(model_dir) as local_model:  # one load and one listing serve the scores and the calibration
        classifier = load_classifier(local_model)
        meta = classifier.metadata
        listed = datasets.list_examples(data_dir, meta.class_names)
        predictions = evaluate.predict_with(classifier, listed, data_dir, split)
        try:
            train = datasets.split_as_trained(listed, meta.trained_on).train
        except ValueError:
            raise ValueError(f"--data-dir {data_dir} is not the folder model {meta.model_version} was trained on: "
                             "its training faces calibrate the int8 copy") from None
        picked = np.random.default_rng(REPRESENTATIVE_SEED).permutation(len(train))[:REPRESENTATIVE_FACES]
        representative, _ = datasets.load_arrays([train[i] for i in sorted(picked)], meta.aligned_crops)
        return scored_variants(classifier, local_model, predictions, representative, split, threads)


def scored_variants(classifier: Classifier, local_model: str, predictions: evaluate.Predictions,
                    representative: np.ndarray, split: str, threads: int) -> tuple[dict, bytes]:
    """compare()'s figures for the loaded SavedModel and each VARIANTS conversion of it, and the int8 buffer."""
    meta = classifier.metadata

    def scores(probabilities: np.ndarray) -> dict:
        decided = meta.decide(probabilities)
        report = metrics.classification_report(predictions.labels, decided, probabilities, meta.class_names)
        return {"accuracy": report["accuracy"], "roc_auc": report["roc_auc"], "ece": report["ece"],
                "sad_recall": report["per_class"][meta.class_names[-1]]["recall"],
                "labels_changed": int((decided != predictions.predicted).sum()),
                "largest_probability_change": float(np.abs(probabilities - predictions.probabilities).max())}

    results = {"savedmodel": {**scores(predictions.probabilities), "megabytes": folder_megabytes(local_model),
                              "faces_per_second": faces_per_second(classifier)}}
    flatbuffers = {}
    for variant in VARIANTS:
        with console.native_stderr_filtered(LITE_NOISE):
            flatbuffers[variant] = convert(local_model, variant, representative)
        lite = LiteClassifier(flatbuffers[variant], threads)
        probabilities = predict_in_batches(lite, predictions.images, len(meta.class_names))
        results[variant] = {**scores(probabilities), "megabytes": len(flatbuffers[variant]) / 1e6,
                            "faces_per_second": faces_per_second(lite)}
    return ({"model_version": meta.model_version, "split": split, "faces": len(predictions.labels),
             "threads": threads, "representative_faces": len(representative), "variants": results},
            flatbuffers["int8"])


def write_int8(model_dir: str, result: dict, flatbuffer: bytes) -> Path:
    """Store the int8 flatbuffer in the model folder and its figures under `int8` in the metadata."""
    folder = Path(model_dir)
    (folder / INT8_FILENAME).write_bytes(flatbuffer)
    int8 = result["variants"]["int8"]
    metadata = ModelMetadata.read(folder)
    recorded = {"file": INT8_FILENAME, "sha256": flatbuffer_digest(flatbuffer), "split": result["split"],
                "faces": result["faces"],
                "representative_faces": result["representative_faces"],
                **{key: round(int8[key], 6) for key in ("accuracy", "roc_auc", "sad_recall", "ece")},
                "labels_changed": int8["labels_changed"],
                "float32_accuracy": round(result["variants"]["savedmodel"]["accuracy"], 6)}
    dataclasses.replace(metadata, int8=recorded).write(folder)
    return folder / INT8_FILENAME


def folder_megabytes(folder: str) -> float:
    """Size of the SavedModel folder in megabytes (10^6 bytes): every file but an int8 copy already in it."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(folder) for f in names
               if f != INT8_FILENAME) / 1e6


def format_table(result: dict) -> str:
    """compare()'s figures as a fixed-width table, one row per variant."""
    lines = [f"model {result['model_version']}, {result['split']} split ({result['faces']} faces), "
             f"{result['threads']} threads",
             f"{'variant':<11}{'accuracy':>9}{'ROC AUC':>9}{'sad rec':>9}{'ECE':>8}{'changed':>9}{'max dp':>8}"
             f"{'MB':>7}{'faces/s':>9}"]
    for name, row in result["variants"].items():
        lines.append(f"{name:<11}{row['accuracy']:>9.4f}{row['roc_auc']:>9.4f}{row['sad_recall']:>9.4f}"
                     f"{row['ece']:>8.4f}{row['labels_changed']:>9d}{row['largest_probability_change']:>8.4f}"
                     f"{row['megabytes']:>7.2f}{row['faces_per_second']:>9.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = console.OneLineParser(prog="python -m trainer.quantize", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="exported model folder, local or gs://")
    parser.add_argument("--data-dir", required=True, help="the folder the model was trained on (its split)")
    parser.add_argument("--split", choices=evaluate.SPLITS, default=datasets.VALIDATION,
                        help="faces to score on (default: validation; test for models trained with one)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="TensorFlow Lite interpreter threads (default: every core)")
    parser.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    parser.add_argument("--write", action="store_true",
                        help=f"store the int8 conversion in the model folder ({INT8_FILENAME}) and its figures in "
                             "the metadata, for pipeline.run --precision int8 (local model folders only)")
    args = parser.parse_args(argv)
    if args.write and not is_local(args.model):
        print("error: --write needs a local model folder (copy it, write, then upload it)", file=sys.stderr)
        return console.USAGE_ERROR_STATUS
    try:
        result, flatbuffer = compare(args.model, args.data_dir, args.split, max(1, args.threads))
    except (ModelLoadError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return console.USAGE_ERROR_STATUS
    print(format_table(result))
    if args.write:
        print(f"wrote {write_int8(args.model, result, flatbuffer)}")
    if args.json_path:
        write_text(args.json_path, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
