"""The benchmark's workers: each runs in a fresh subprocess (`python -m bench.bench --worker limit|micro`) and
prints one BENCH_RESULT line.

- limit: the plain loop, read -> preprocess_image -> the model in batches of BATCH_SIZE -> a CSV;
- micro: decoding and preprocessing alone, inference alone on a preloaded batch (and of the int8 copy, where
  the model has one), and the served function's FLOPs per image.
"""

import os
import time
from pathlib import Path

import numpy as np

from bench.measuring import T0_ENV
from model.contract import INPUT_SHAPE, is_image_path
from model.lite import INT8_FILENAME, PRECISION_INT8

BATCH_SIZE: int = 256
MICRO_FACES: int = 2_000          # faces decoded in the decode-alone measurement
MICRO_MIN_SECONDS: float = 3.0    # inference-alone runs at least this long


def list_images(folder: Path) -> list[str]:
    """Every image file under folder, sorted (the pipeline walks folders the same way)."""
    return sorted(os.path.join(d, f) for d, _, names in os.walk(folder) for f in names if is_image_path(f))


def load_for_bench(model_dir: str, precision: str):
    """The SavedModel, or with PRECISION_INT8 its int8 copy in LiteRT with a thread per core."""
    from model.lite import load_int8_classifier
    from model.saved import load_classifier
    if precision == PRECISION_INT8:
        return load_int8_classifier(model_dir, os.cpu_count() or 1)
    return load_classifier(model_dir)


def worker_limit(input_dir: Path, model_dir: str, output_dir: Path, precision: str) -> dict:
    """The limit: read, preprocess and classify in a plain loop, batches of BATCH_SIZE; write a CSV."""
    import csv
    imported = time.perf_counter()
    from model.preprocess import ImageDecodeError, preprocess_image
    loading = time.perf_counter()
    classifier = load_for_bench(model_dir, precision)
    started = time.perf_counter()
    ready_after_spawn = time.time() - float(os.environ.get(T0_ENV, time.time()))
    rows, failed, batch, batch_paths = [], 0, [], []

    def flush() -> None:
        probabilities = classifier(np.stack(batch))
        names = classifier.metadata.class_names
        for path, chosen, p in zip(batch_paths, classifier.metadata.decide(probabilities), probabilities):
            rows.append((path, names[chosen], *(f"{v:.6f}" for v in p)))
        batch.clear(), batch_paths.clear()

    for path in list_images(input_dir):
        try:
            with open(path, "rb") as handle:
                batch.append(preprocess_image(handle.read()))
            batch_paths.append(path)
        except (OSError, ImageDecodeError):
            failed += 1
        if len(batch) == BATCH_SIZE:
            flush()
    if batch:
        flush()
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(sorted(rows))
    inside = time.perf_counter() - started
    return {"images_labelled": len(rows), "images_failed": failed, "inside_seconds": inside,
            "images_per_second": len(rows) / inside, "import_seconds": loading - imported,
            "load_seconds": started - loading, "model_ready_after_spawn_seconds": ready_after_spawn}


def served_flops_per_image(signature) -> dict:
    """FLOPs of one image through the served function (the network twice when the model averages face and mirror).

    The signature is retraced for a batch of 1 and frozen (variables -> constants, nested calls inlined), so
    every shape is known: `analytic` = 2 x MACs of Conv2D/MatMul ops, `profiler` = tf.compat.v1.profiler's
    float_operation total (also counts element-wise ops such as BatchNorm's mul/add).
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    traced = tf.function(lambda x: signature(images=x)).get_concrete_function(
        tf.TensorSpec([1, *INPUT_SHAPE], tf.float32))
    graph = convert_variables_to_constants_v2(traced).graph
    macs = 0
    for op in graph.get_operations():
        if op.type == "Conv2D":  # MACs = kernel h x w x input channels per output element
            macs += int(np.prod(op.inputs[1].shape[:3])) * int(np.prod(op.outputs[0].shape))
        elif op.type == "MatMul":
            macs += int(np.prod(op.inputs[0].shape.as_list())) * int(op.outputs[0].shape[-1])
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profiled = tf.compat.v1.profiler.profile(graph, options=options).total_float_ops
    return {"analytic": 2 * macs, "profiler": int(profiled)}


def worker_micro(input_dir: Path, model_dir: str) -> dict:
    """Decode+preprocess alone, inference alone on a preloaded array, and FLOPs per image."""
    from model.preprocess import preprocess_image
    from model.saved import load_classifier
    results = {}
    faces = [Path(p).read_bytes() for p in list_images(input_dir / "faces")[:MICRO_FACES]]
    large = [Path(p).read_bytes() for p in list_images(input_dir / "large")]
    arrays = []
    for name, blobs in (("faces", faces), ("large", large)):
        started = time.perf_counter()
        arrays += [preprocess_image(data) for data in blobs]
        seconds = time.perf_counter() - started
        results[f"decode_{name}"] = {"images": len(blobs), "seconds": seconds,
                                     "images_per_second": len(blobs) / seconds if blobs else 0.0}
    classifier = load_classifier(model_dir)
    batch = np.stack((arrays * (BATCH_SIZE // len(arrays) + 1))[:BATCH_SIZE])
    results["inference"] = inference_alone(classifier, batch)
    results["flops_per_image"] = served_flops_per_image(classifier.signature)
    results["model_version"] = classifier.metadata.model_version
    if has_int8_copy(model_dir):
        results["inference_int8"] = inference_alone(load_for_bench(model_dir, PRECISION_INT8), batch)
    return results


def inference_alone(classifier, batch: np.ndarray) -> dict:
    """Images/s of classifier called again and again on one preloaded batch, for at least MICRO_MIN_SECONDS
    after a warm-up call (the first call traces and allocates)."""
    classifier(batch)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < MICRO_MIN_SECONDS:
        classifier(batch)
        done += len(batch)
    seconds = time.perf_counter() - started
    return {"images": done, "seconds": seconds, "images_per_second": done / seconds, "batch_size": len(batch)}


def has_int8_copy(model_dir: str) -> bool:
    """Whether the model folder holds an int8 copy (model.lite) to measure beside the SavedModel."""
    return (Path(model_dir) / INT8_FILENAME).is_file()
