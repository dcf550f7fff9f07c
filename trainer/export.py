"""Export a trained network as the SavedModel the pipeline serves.

The serving function bakes in what happens after the network so that every consumer gets it for free:
- test-time augmentation: logits averaged over the face and its mirror image (faces are left-right symmetric
  in expression, and this reliably helps on FER2013);
- temperature scaling fitted on the validation split, so `p_<class>` is calibrated;
- softmax to per-class probabilities.

Signature `serving_default`: `images` float32 [batch, 48, 48, 1] (0..255) -> `probabilities` float32 [batch, classes].
"""

import hashlib
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from model.contract import INPUT_SHAPE, SERVING_INPUT, SERVING_OUTPUT, SERVING_SIGNATURE
from model.metadata import ModelMetadata

WIDTH_AXIS: int = 2  # images are [batch, height, width, channels]


class ServingModule(tf.Module):
    """The exported object: the network plus mirror averaging, temperature and softmax."""

    def __init__(self, network: keras.Model, temperature: float = 1.0, mirror_average: bool = True):
        super().__init__(name="facelabel")
        # The same layers in an uncompiled model: the trained model also tracks its optimizer's state (two more
        # copies of every weight), which the served model does not need.
        self.network = keras.Model(network.inputs, network.outputs, name=network.name)
        self.temperature = tf.Variable(temperature, dtype=tf.float32, trainable=False, name="temperature")
        self.mirror_average = mirror_average

    def logits(self, images: tf.Tensor) -> tf.Tensor:
        """Network logits, averaged with those of the mirrored faces when mirror averaging is on."""
        if not self.mirror_average:
            return self.network(images, training=False)
        both = self.network(tf.concat([images, tf.reverse(images, axis=[WIDTH_AXIS])], axis=0), training=False)
        original, mirrored = tf.split(both, 2, axis=0)
        return (original + mirrored) / 2.0

    @tf.function(input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.float32, name=SERVING_INPUT)])
    def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {SERVING_OUTPUT: tf.nn.softmax(self.logits(images) / self.temperature, axis=-1)}


def batched_logits(module: ServingModule, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits (before temperature) for a whole array, in batches to bound memory."""
    compiled = tf.function(module.logits, input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.float32)])
    parts = [compiled(images[start:start + batch_size]).numpy() for start in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, module.network.output_shape[-1]), np.float32)


def weights_digest(network: keras.Model) -> str:
    """Short hash of the trained weights: part of the model version, so equal versions mean equal weights."""
    digest = hashlib.sha256()
    for weight in network.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:8]


def export_model(module: ServingModule, metadata: ModelMetadata, output_dir: str | Path) -> Path:
    """Write the SavedModel and its metadata into output_dir (created if needed)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(output_dir), signatures={SERVING_SIGNATURE: module.serve})
    metadata.write(output_dir)
    return output_dir
