"""The int8 copy of a model: the same serving function quantized for TensorFlow Lite, and its loader.

`trainer.quantize --write` converts a model's serving signature (mirror averaging, temperature and softmax
included) with TensorFlow's post-training full-integer quantization
(https://www.tensorflow.org/lite/performance/post_training_quantization) and stores it beside the SavedModel as
INT8_FILENAME, with its figures on the model's validation split under `int8` in the metadata. On CPUs with int8
dot-product instructions it labels faces several times faster than the float32 SavedModel (trainer/RESULTS.md);
a few faces near the threshold can get the other label, which is why its rows carry their own model version
(`<version>+int8`) and `--incremental` relabels when the precision changes.

It runs in LiteRT (`ai_edge_litert`, TensorFlow Lite's runtime as its own package): input float32
[batch, 48, 48, 1] of 0..255, output per-class probabilities [batch, classes], as the SavedModel's signature.
"""

import dataclasses
from pathlib import Path

import numpy as np

from model.metadata import ModelMetadata
from model.saved import ModelLoadError, check_model_dir

INT8_FILENAME: str = "classifier_int8.tflite"
INT8_VERSION_SUFFIX: str = "+int8"
PRECISION_FLOAT32: str = "float32"
PRECISION_INT8: str = "int8"
PRECISIONS: tuple[str, ...] = (PRECISION_FLOAT32, PRECISION_INT8)


def int8_metadata(metadata: ModelMetadata) -> ModelMetadata:
    """The metadata rows of the int8 copy carry: the same model, its version marked `+int8`."""
    return dataclasses.replace(metadata, model_version=metadata.model_version + INT8_VERSION_SUFFIX)


def check_int8_model(model_dir: str | Path) -> ModelMetadata:
    """The int8 copy's metadata (see int8_metadata) if model_dir holds one; raises ModelLoadError (one line)
    if it does not. Cheap: reads the metadata and checks that the file is there, loads nothing."""
    metadata = check_model_dir(model_dir)
    if not (Path(model_dir) / INT8_FILENAME).is_file():
        raise ModelLoadError(f"model {metadata.model_version} has no int8 copy ({INT8_FILENAME}): make one with "
                             f"python -m trainer.quantize --model {model_dir} --data-dir <its data> --write, "
                             "or label with --precision float32")
    return int8_metadata(metadata)


class LiteClassifier:
    """A TensorFlow Lite model: call it on float32 [batch, 48, 48, 1] faces of 0..255 for probabilities
    [batch, classes]. The interpreter's input has one batch size at a time: a new size re-plans its memory, so
    callers keep sizes few (the pipeline pads batches to powers of two)."""

    def __init__(self, flatbuffer: bytes, threads: int, metadata: ModelMetadata | None = None):
        from ai_edge_litert.interpreter import Interpreter  # where a model runs; checks do without it

        self.metadata = metadata
        self.interpreter = Interpreter(model_content=flatbuffer, num_threads=max(1, threads))
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch = 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if len(images) != self.batch:
            self.interpreter.resize_tensor_input(self.input, list(images.shape))
            self.interpreter.allocate_tensors()
            self.batch = len(images)
        self.interpreter.set_tensor(self.input, np.ascontiguousarray(images, np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()


def load_int8_classifier(model_dir: str | Path, threads: int) -> LiteClassifier:
    """The int8 copy in a local model folder, with int8_metadata; raises ModelLoadError (one line) when the
    folder has none or it cannot be loaded."""
    metadata = check_int8_model(model_dir)
    try:
        return LiteClassifier((Path(model_dir) / INT8_FILENAME).read_bytes(), threads, metadata)
    except (ValueError, RuntimeError) as err:  # what LiteRT raises for a damaged flatbuffer
        raise ModelLoadError(f"cannot load {INT8_FILENAME} of {model_dir}: {err}") from None
