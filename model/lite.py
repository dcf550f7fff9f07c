"""The int8 copy of a model: the same serving function quantized for TensorFlow Lite, and its loader.

`trainer.quantize --write` converts a model's serving signature (mirror averaging, temperature and softmax
included) with TensorFlow's post-training full-integer quantization
(https://www.tensorflow.org/lite/performance/post_training_quantization) and stores it beside the SavedModel as
INT8_FILENAME, with its SHA-256 and its figures on a split of the training data under `int8` in the metadata; a
copy whose digest does not match (left over from an earlier model in the same folder) is refused. On CPUs with
int8 dot-product instructions it classifies faces several times faster than the float32 SavedModel (README,
Performance; trainer/RESULTS.md); a few faces near the threshold can get the other label, which is why its rows
carry their own model version (`<version>+int8`) and `--incremental` relabels when the precision changes.

It runs in LiteRT (`ai_edge_litert`, TensorFlow Lite's runtime as its own package): input float32
[batch, 48, 48, 1] of 0..255, output per-class probabilities [batch, classes], as the SavedModel's signature.
"""

import dataclasses
import hashlib
import re
import threading
from pathlib import Path

import numpy as np

from model.console import native_stderr_filtered
from model.metadata import ModelMetadata
from model.saved import ModelLoadError, check_model_dir

INT8_FILENAME: str = "classifier_int8.tflite"
INT8_VERSION_SUFFIX: str = "+int8"
PRECISION_FLOAT32: str = "float32"
PRECISION_INT8: str = "int8"
PRECISIONS: tuple[str, ...] = (PRECISION_FLOAT32, PRECISION_INT8)
# LiteRT's notice on every interpreter it builds: nothing a user acts on.
LITE_NOISE = re.compile(r"Created TensorFlow Lite XNNPACK delegate for CPU")


def flatbuffer_digest(flatbuffer: bytes) -> str:
    """SHA-256 (hex) of a converted model: recorded under `int8` in the metadata, checked before serving."""
    return hashlib.sha256(flatbuffer).hexdigest()


def int8_metadata(metadata: ModelMetadata) -> ModelMetadata:
    """The metadata rows of the int8 copy carry: the same model, its version marked `+int8`."""
    return dataclasses.replace(metadata, model_version=metadata.model_version + INT8_VERSION_SUFFIX)


def check_int8_model(model_dir: str | Path, shown_as: str | None = None) -> ModelMetadata:
    """The int8 copy's metadata (see int8_metadata) if model_dir holds this model's int8 copy; raises
    ModelLoadError (one line, naming the model as shown_as, default model_dir) if it has none, or one whose
    SHA-256 is not the one recorded in the metadata (a copy left from an earlier model, or none recorded)."""
    return verified_int8_copy(model_dir, shown_as)[0]


def verified_int8_copy(model_dir: str | Path, shown_as: str | None = None) -> tuple[ModelMetadata, bytes]:
    """(int8_metadata, the flatbuffer) of model_dir's int8 copy, read once and checked against its recorded
    SHA-256; raises ModelLoadError as check_int8_model says."""
    metadata = check_model_dir(model_dir)
    path = Path(model_dir) / INT8_FILENAME
    remake = (f"make one with python -m trainer.quantize --model {shown_as or model_dir} --data-dir <its training "
              "data> --write, or label with --precision float32")
    if not path.is_file():
        raise ModelLoadError(f"model {metadata.model_version} has no int8 copy ({INT8_FILENAME}): {remake}")
    flatbuffer = path.read_bytes()
    if metadata.int8.get("sha256") != flatbuffer_digest(flatbuffer):
        raise ModelLoadError(f"the {INT8_FILENAME} beside model {metadata.model_version} is not the int8 copy its "
                             f"metadata records (left from another model?): {remake}")
    return int8_metadata(metadata), flatbuffer


class LiteClassifier:
    """A TensorFlow Lite model: call it on float32 [batch, 48, 48, 1] faces of 0..255 for probabilities
    [batch, classes]. The interpreter's input has one batch size at a time: a new size re-plans its memory, so
    callers keep sizes few (the pipeline pads batches to powers of two)."""

    # Its probabilities come in steps of 1/256: TensorFlow Lite's int8 softmax output has scale 1/256 (TensorFlow
    # Lite 8-bit quantization specification, SOFTMAX: output scale 1.0 / 256.0, zero point -128).
    probability_step: float = 1 / 256

    def __init__(self, flatbuffer: bytes, threads: int, metadata: ModelMetadata | None = None):
        from ai_edge_litert.interpreter import Interpreter  # where a model runs; checks do without it

        self.metadata = metadata
        with native_stderr_filtered(LITE_NOISE):
            self.interpreter = Interpreter(model_content=flatbuffer, num_threads=max(1, threads))
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch = 0
        # An interpreter is not thread-safe, and RunInference shares one model between a worker's threads.
        # Re-entrant: model.mirror.MirrorAveraged holds it across its two calls.
        self.lock = threading.RLock()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        with self.lock:
            if len(images) != self.batch:
                self.interpreter.resize_tensor_input(self.input, list(images.shape))
                with native_stderr_filtered(LITE_NOISE):  # LiteRT rebuilds its delegate when re-planning
                    self.interpreter.allocate_tensors()
                self.batch = len(images)
            self.interpreter.set_tensor(self.input, np.ascontiguousarray(images, np.float32))
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self.output).copy()


def load_int8_classifier(model_dir: str | Path, threads: int) -> LiteClassifier:
    """The int8 copy in a local model folder, with int8_metadata; raises ModelLoadError (one line) when the
    folder has none or it cannot be loaded."""
    metadata, flatbuffer = verified_int8_copy(model_dir)
    try:
        return LiteClassifier(flatbuffer, threads, metadata)
    except (ValueError, RuntimeError) as err:  # what LiteRT raises for a damaged flatbuffer
        raise ModelLoadError(f"cannot load {INT8_FILENAME} of {model_dir}: {err}") from None
