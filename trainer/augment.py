"""Training-time augmentation and the training dataset: what the network sees of each face while it learns.

Label-preserving changes of the 48x48 greyscale faces from `model.preprocess` (mirror, small rotation, shift and
zoom, lighting, occlusion), optionally a loss of resolution (a face found small in a photo and enlarged to 48x48
is blurred the same way, see `RandomLowResolution`), and optionally mixup. Everything is seeded, so a run with
the same seed and data gives the same weights.
"""

import keras
import numpy as np
import tensorflow as tf

AUGMENT_ROTATION: float = 10.0 / 360.0  # +-10 degrees, as a fraction of a full turn
AUGMENT_SHIFT: float = 0.1
AUGMENT_ZOOM: float = 0.1
AUGMENT_CONTRAST: float = 0.3
AUGMENT_BRIGHTNESS: float = 0.2
ERASE_PROBABILITY: float = 0.5
ERASE_AREA: tuple[float, float] = (0.02, 0.15)
# Sides (pixels) a face is shrunk to by RandomLowResolution before it is enlarged back: faces the job finds in
# photos from 24 pixels up (model.faces.MIN_REPORTED_FACE_SIDE) are enlarged to 48x48 by alignment.
LOW_RESOLUTION_SIDES: tuple[int, int] = (16, 36)
LOW_RESOLUTION_SEED_OFFSET: int = 7  # augmentation layers use seed .. seed + 7
MIXUP_SEED_OFFSET: int = 100


class HardTargetAUC(keras.metrics.AUC):
    """Keras's ROC AUC, with each target rounded to 0 or 1 first. Mixup and distillation train on soft targets,
    which keras.metrics.AUC takes as labels and then reports 0; rounded, a soft target counts as the class it
    leans to (an exact 50/50 target rounds to 0 for both classes, as tf.round rounds half to even), so the
    training log's AUC stays meaningful. One-hot targets (every validation split, and training without mixup or
    teachers) are unchanged, so runs monitored on it choose the same epoch as before."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(tf.round(y_true), y_pred, sample_weight)


class RandomLowResolution(keras.layers.Layer):
    """Each face, with the given probability, shrunk to a random side in LOW_RESOLUTION_SIDES (area averaging,
    as a small sensor region would record it) and enlarged back (bilinear, as `model.align` resamples).

    Input and output: float [batch, height, width, channels]. One side is drawn per batch, the faces it applies
    to per face. Identity at inference.
    """

    def __init__(self, probability: float, sides: tuple[int, int] = LOW_RESOLUTION_SIDES, seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.probability, self.sides = probability, sides
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training or self.probability <= 0:
            return images
        side = keras.random.randint((), self.sides[0], self.sides[1] + 1, seed=self.seed_generator)
        small = tf.image.resize(images, tf.stack([side, side]), method="area")
        blurred = tf.image.resize(small, tf.shape(images)[1:3], method="bilinear")
        chosen = keras.random.uniform((tf.shape(images)[0], 1, 1, 1), seed=self.seed_generator) < self.probability
        return tf.where(chosen, blurred, images)

    def get_config(self) -> dict:
        return {**super().get_config(), "probability": self.probability, "sides": self.sides}


def augmentation(seed: int, low_resolution: float = 0.0) -> keras.Sequential:
    """Label-preserving augmentation for faces: mirror, small rotation/shift/zoom, optionally lost resolution
    (probability low_resolution), lighting, occlusion."""
    steps = [
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(AUGMENT_ROTATION, fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomTranslation(AUGMENT_SHIFT, AUGMENT_SHIFT, fill_mode="reflect", seed=seed + 2),
        keras.layers.RandomZoom(AUGMENT_ZOOM, fill_mode="reflect", seed=seed + 3),
    ]
    if low_resolution:
        steps.append(RandomLowResolution(low_resolution, seed=seed + LOW_RESOLUTION_SEED_OFFSET))
    steps += [
        keras.layers.RandomContrast(AUGMENT_CONTRAST, value_range=(0, 255), seed=seed + 4),
        keras.layers.RandomBrightness(AUGMENT_BRIGHTNESS, value_range=(0, 255), seed=seed + 5),
        keras.layers.RandomErasing(ERASE_PROBABILITY, scale=ERASE_AREA, value_range=(0, 255), seed=seed + 6),
    ]
    return keras.Sequential(steps, name="augment")


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Weights inversely proportional to class frequency, so each class carries equal total weight."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return len(labels) / (num_classes * np.maximum(counts, 1.0))


def mixup(alpha: float, seed: int):
    """Batch -> batch with faces and targets blended pairwise (keras MixUp).

    The class weight rides along as one more target column, so a blended face carries the blended weight.
    """
    blend = keras.layers.MixUp(alpha=alpha, seed=seed)

    def apply(images: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor):
        mixed = blend({"images": images, "labels": tf.concat([targets, weights[:, None]], axis=-1)}, training=True)
        return mixed["images"], mixed["labels"][:, :-1], mixed["labels"][:, -1]

    return apply


def train_dataset(images: np.ndarray, labels: np.ndarray, weights: np.ndarray, num_outputs: int, *, seed: int,
                  batch_size: int, augment: bool = True, low_resolution: float = 0.0,
                  mixup_alpha: float = 0.0, targets: np.ndarray | None = None) -> tf.data.Dataset:
    """Shuffled, augmented batches of (faces [b, 48, 48, 1], targets [b, num_outputs], weights [b]); the targets
    are one-hot labels unless given (e.g. distillation's soft targets, [n, num_outputs])."""
    if targets is None:
        targets = keras.utils.to_categorical(labels, num_outputs).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((images, targets, weights.astype(np.float32)))
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    if augment:
        augmenter = augmentation(seed, low_resolution)
        dataset = dataset.map(lambda x, y, w: (augmenter(x, training=True), y, w),
                              num_parallel_calls=tf.data.AUTOTUNE)
    if mixup_alpha:
        dataset = dataset.map(mixup(mixup_alpha, seed + MIXUP_SEED_OFFSET), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
