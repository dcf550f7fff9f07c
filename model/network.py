"""The Keras network: a small VGG-style CNN for 48x48 greyscale faces.

Pixel scaling lives inside the network (a `Rescaling` layer), so whoever serves it feeds raw 0..255 pixels from
`model.preprocess.preprocess_image` and nothing else. The network returns logits; the exported SavedModel
turns them into calibrated probabilities (see `trainer/export.py`).
"""

import keras
from keras import layers

from model.contract import CLASS_NAMES, INPUT_SHAPE

# Filters of the convolution blocks; each block halves the spatial size (48 -> 24 -> 12 -> 6 -> 3).
DEFAULT_BLOCK_FILTERS: tuple[int, ...] = (32, 64, 128, 256)
CONVS_PER_BLOCK: int = 2
DEFAULT_DROPOUT: float = 0.4
PIXEL_SCALE: float = 1.0 / 255.0


def build_network(
    num_classes: int = len(CLASS_NAMES),
    block_filters: tuple[int, ...] = DEFAULT_BLOCK_FILTERS,
    dropout: float = DEFAULT_DROPOUT,
) -> keras.Model:
    """Build the classifier: conv blocks (conv-BN-ReLU x2, max-pool), global pooling, dropout, logits."""
    inputs = keras.Input(shape=INPUT_SHAPE, name="images")
    x = layers.Rescaling(PIXEL_SCALE, name="scale_pixels")(inputs)
    for block, filters in enumerate(block_filters):
        for conv in range(CONVS_PER_BLOCK):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}")(x)
            x = layers.BatchNormalization(name=f"block{block}_bn{conv}")(x)
            x = layers.Activation("relu", name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="facelabel_cnn")
