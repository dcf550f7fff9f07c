"""A RunInference model handler for facelabel models: the SavedModel, or its int8 copy (`--precision int8`).

Beam's own `TFModelHandlerNumpy` loads with `tf.keras.models.load_model`, which Keras 3 refuses for SavedModel
folders (apache/beam#30616), and Beam has no TensorFlow Lite handler. This handler loads with
`tf.saved_model.load` (via `model.saved`) or LiteRT (via `model.lite`) and otherwise leaves everything to
RunInference: batching, one shared model per worker process, and inference metrics.
"""

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import logging
import os

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from model.contract import DEFAULT_MODEL_DIR
from model.lite import PRECISION_FLOAT32, PRECISION_INT8, PRECISIONS, LiteClassifier, load_int8_classifier
from model.mirror import MirrorAveraged, served
from model.saved import Classifier, load_classifier
from pipeline.model_files import localize_model

# Batch size for RunInference (minimum and maximum alike unless --min-batch-size is given, which turns Beam's
# adaptive batching back on): large enough to amortise the per-call cost of the SavedModel, small enough to keep
# latency and memory per bundle low.
DEFAULT_MAX_BATCH_SIZE: int = 256
# Smallest batch the model is called with after padding (see `padded`).
MIN_PADDED_BATCH: int = 16


class Labelled(NamedTuple):
    """What the handler returns for one image: the chosen class name and the per-class probabilities."""

    label: str
    probabilities: tuple[float, ...]


def padded(images: np.ndarray) -> np.ndarray:
    """The batch zero-padded to the next power of two (at least MIN_PADDED_BATCH rows).

    TensorFlow's oneDNN kernels build and cache new primitives for every new input shape, costing memory and
    time; bundles end with partial batches of any size, and padding keeps the shapes to a handful.
    """
    rows = max(MIN_PADDED_BATCH, 1 << (len(images) - 1).bit_length())
    if rows == len(images):
        return images
    return np.concatenate([images, np.zeros((rows - len(images), *images.shape[1:]), images.dtype)])


def limit_tensorflow_threads(threads: int) -> None:
    """Cap TensorFlow's thread pools in this worker process (0 leaves TensorFlow's default: one per core).

    Several worker processes on one machine (Dataflow runs one per vCPU; the DirectRunner's multi_processing
    mode one per --direct_num_workers) each sizing their pools to every core would fight over the cores.
    The pools can only be sized before TensorFlow first runs, so a process that already ran it keeps its own.
    """
    if threads <= 0:
        return
    import tensorflow as tf  # in the worker that runs the model, not where the job is built

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        logging.getLogger("facelabel").debug("TensorFlow already initialised; thread pools left as they are")


class ClassifierHandler(ModelHandler[np.ndarray, PredictionResult, Classifier | LiteClassifier | MirrorAveraged]):
    """Runs a facelabel model on batches of preprocessed faces (float32 [48, 48, 1] each): the SavedModel, or
    with precision PRECISION_INT8 its int8 copy (whose rows carry the version `<version>+int8`); with
    mirror_average, each face averaged with its mirror image (model.mirror: rows carry `<version>+mirror`, unless
    the network averages inside already).

    model_uri None means the shipped default model, found in the package installed where the model is loaded
    (a Dataflow worker's copy is not at the launching machine's path).
    """

    def __init__(self, model_uri: str | None, min_batch_size: int | None = None,
                 max_batch_size: int | None = None, inference_threads: int = 0,
                 precision: str = PRECISION_FLOAT32, mirror_average: bool = False):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self._model_uri = model_uri
        self._precision = precision
        self._mirror_average = mirror_average
        # Every distinct batch size costs TensorFlow's oneDNN kernels a new set of cached primitives (memory and
        # JIT time), so batches have one size unless a smaller minimum turns Beam's adaptive sizing back on.
        max_batch_size = max_batch_size or DEFAULT_MAX_BATCH_SIZE
        min_batch_size = min(min_batch_size or max_batch_size, max_batch_size)
        self._batch_kwargs = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}
        self._inference_threads = inference_threads

    def load_model(self) -> Classifier | LiteClassifier | MirrorAveraged:
        folder = DEFAULT_MODEL_DIR if self._model_uri is None else localize_model(self._model_uri)
        if self._precision == PRECISION_INT8:
            classifier = load_int8_classifier(folder, self._inference_threads or os.cpu_count() or 1)
        else:
            limit_tensorflow_threads(self._inference_threads)
            classifier = load_classifier(folder)
        return served(classifier, self._mirror_average)

    def run_inference(self, batch: Sequence[np.ndarray], model: Classifier | LiteClassifier | MirrorAveraged,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        probabilities = model(padded(np.stack(batch)))[: len(batch)]
        chosen = model.metadata.decide(probabilities)
        names = model.metadata.class_names
        version = model.metadata.model_version
        return [PredictionResult(example=None, inference=Labelled(names[c], tuple(p.tolist())), model_id=version)
                for c, p in zip(chosen, probabilities)]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(image.nbytes for image in batch)

    def batch_elements_kwargs(self) -> dict[str, int]:
        return self._batch_kwargs

    def get_metrics_namespace(self) -> str:
        return "facelabel"
