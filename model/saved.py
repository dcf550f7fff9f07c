"""Loading an exported facelabel SavedModel for inference.

`tf.saved_model.load` is used rather than `keras.models.load_model`: Keras 3 refuses SavedModel folders
(apache/beam#30616), and the serving signature is all a consumer needs. The trainer's evaluation and the
pipeline's model handler both load through here, so they see the same model the same way.
"""

import dataclasses
from pathlib import Path

import numpy as np

from model.contract import SERVING_INPUT, SERVING_OUTPUT, SERVING_SIGNATURE
from model.metadata import METADATA_FILENAME, ModelMetadata

# Faces per call when a caller hands a classifier more than one batch.
PREDICT_BATCH_SIZE: int = 256

SAVED_MODEL_FILENAME: str = "saved_model.pb"
VARIABLES_DIRNAME: str = "variables"  # the SavedModel's checkpoint: variables/variables.{index,data-*}


class ModelLoadError(ValueError):
    """The folder is not a usable facelabel model; the message says why in one line."""


@dataclasses.dataclass
class Classifier:
    """A loaded model: call it on a float32 [batch, 48, 48, 1] array of 0..255 pixels to get probabilities."""

    metadata: ModelMetadata
    signature: object
    # Keeps the loaded object alive: the signature's variables belong to it.
    saved_model: object

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import tensorflow as tf  # imported where a model runs: checks and launchers do without it

        outputs = self.signature(**{SERVING_INPUT: tf.convert_to_tensor(images, dtype=tf.float32)})
        return outputs[SERVING_OUTPUT].numpy()

    def in_batches(self, images: np.ndarray, batch_size: int = PREDICT_BATCH_SIZE) -> np.ndarray:
        """Probabilities [n, classes] of any number of faces [n, 48, 48, 1] (see predict_in_batches)."""
        return predict_in_batches(self, images, len(self.metadata.class_names), batch_size)


def predict_in_batches(predict, images: np.ndarray, classes: int, batch_size: int = PREDICT_BATCH_SIZE) -> np.ndarray:
    """Probabilities [n, classes] from predict (any classifier called on a batch: the SavedModel, or its int8
    copy in model.lite) for any number of faces [n, 48, 48, 1], batch_size at a time (bounded memory); [0, classes]
    for none."""
    if not len(images):
        return np.zeros((0, classes), np.float32)
    return np.concatenate([predict(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def check_model_dir(model_dir: str | Path) -> ModelMetadata:
    """Cheap check that a local folder holds a facelabel model; returns its metadata or raises ModelLoadError."""
    model_dir = Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise ModelLoadError(f"model is a file, not a model folder: {model_dir} (give the SavedModel's folder)")
    if not model_dir.is_dir():
        raise ModelLoadError(f"model folder not found: {model_dir}")
    if not (model_dir / SAVED_MODEL_FILENAME).is_file():
        raise ModelLoadError(f"not a SavedModel (no {SAVED_MODEL_FILENAME}): {model_dir}")
    if not (model_dir / METADATA_FILENAME).is_file():
        raise ModelLoadError(f"not a facelabel model (no {METADATA_FILENAME}): {model_dir}")
    try:
        return ModelMetadata.read(model_dir)
    except (ValueError, TypeError) as err:
        raise ModelLoadError(f"unreadable {METADATA_FILENAME} in {model_dir}: {err}") from None


def load_classifier(model_dir: str | Path) -> Classifier:
    """Load the SavedModel in a local folder and check its signature against its metadata.

    Raises ModelLoadError (one line) for a folder without a model's metadata, a SavedModel TensorFlow cannot load,
    or a serving signature missing, taking another input shape than the metadata's ([n, 48, 48, 1]) or without
    the probabilities output.
    """
    import tensorflow as tf

    metadata = check_model_dir(model_dir)
    try:
        saved_model = tf.saved_model.load(str(model_dir))
    except Exception as err:  # TensorFlow raises many types for a broken SavedModel
        raise ModelLoadError(f"cannot load SavedModel {model_dir}: {type(err).__name__}: {err}") from None
    signature = saved_model.signatures.get(SERVING_SIGNATURE)
    if signature is None:
        raise ModelLoadError(f"SavedModel {model_dir} has no {SERVING_SIGNATURE!r} signature")
    _, inputs = signature.structured_input_signature
    spec = inputs.get(SERVING_INPUT)
    if spec is None or tuple(spec.shape[1:]) != tuple(metadata.input_shape):
        got = None if spec is None else tuple(spec.shape)
        raise ModelLoadError(
            f"SavedModel {model_dir} takes input {got}, expected [batch, {', '.join(map(str, metadata.input_shape))}]"
        )
    if SERVING_OUTPUT not in signature.structured_outputs:
        raise ModelLoadError(f"SavedModel {model_dir} has no {SERVING_OUTPUT!r} output")
    return Classifier(metadata=metadata, signature=signature, saved_model=saved_model)


def check_classifier(model_dir: str | Path) -> ModelMetadata:
    """What load_classifier checks, without loading the model: the metadata, the serving signature's input
    shape and output read from saved_model.pb, and that every variable can be read (check_variables): a fraction
    of a second, no functions traced.

    Returns the metadata; raises ModelLoadError with a one-line reason.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    metadata = check_model_dir(model_dir)
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((Path(model_dir) / SAVED_MODEL_FILENAME).read_bytes())
    except DecodeError as err:
        raise ModelLoadError(f"cannot load SavedModel {model_dir}: unreadable {SAVED_MODEL_FILENAME}: {err}") from None
    signatures = [graph.signature_def[SERVING_SIGNATURE] for graph in saved.meta_graphs
                  if SERVING_SIGNATURE in graph.signature_def]
    if not signatures:
        raise ModelLoadError(f"SavedModel {model_dir} has no {SERVING_SIGNATURE!r} signature")
    signature = signatures[0]
    spec = signature.inputs.get(SERVING_INPUT)
    shape = None if spec is None or spec.tensor_shape.unknown_rank else tuple(d.size for d in spec.tensor_shape.dim)
    if shape is None or shape[1:] != tuple(metadata.input_shape):
        got = None if spec is None else shape
        raise ModelLoadError(
            f"SavedModel {model_dir} takes input {got}, expected [batch, {', '.join(map(str, metadata.input_shape))}]"
        )
    if SERVING_OUTPUT not in signature.outputs:
        raise ModelLoadError(f"SavedModel {model_dir} has no {SERVING_OUTPUT!r} output")
    check_variables(model_dir)
    return metadata


def check_variables(model_dir: str | Path) -> None:
    """Read every saved variable of the SavedModel in model_dir (a few MB; no graph is built), so a half-copied
    or truncated model fails here; raises ModelLoadError with a one-line reason."""
    import tensorflow as tf

    prefix = str(Path(model_dir) / VARIABLES_DIRNAME / VARIABLES_DIRNAME)
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as err:  # TensorFlow raises many types for missing or damaged checkpoint files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"cannot load SavedModel {model_dir}: its variables cannot be read ({reason})") from None
