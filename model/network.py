"""The Keras network: a small VGG-style CNN for 48x48 greyscale faces, or an ImageNet backbone adapted to them.

Pixel scaling lives inside the network (a `Rescaling` layer, or the backbone's own preprocess function), so
whoever serves it feeds raw 0..255 pixels from `model.preprocess` or `model.align` and nothing else. The network
returns logits; the exported SavedModel turns them into calibrated probabilities (see `trainer/export.py`).

With a backbone (`build_network(backbone="resnet50", weights=...)`) the 48x48x1 face is adapted inside the model:
resized to the backbone's input size, repeated to 3 channels, passed through the backbone's `preprocess_input`,
then the backbone without its top, global average pooling, dropout and a dense logits layer. The model's input
stays [batch, 48, 48, 1] of 0..255 pixels, so export and serving do not change.
"""

import dataclasses
import warnings
from collections.abc import Callable

import keras
from keras import layers

from model.contract import CLASS_NAMES, INPUT_SHAPE

# Filters of the convolution blocks; each block halves the spatial size (48 -> 24 -> 12 -> 6 -> 3).
DEFAULT_BLOCK_FILTERS: tuple[int, ...] = (32, 64, 128, 256)
CONVS_PER_BLOCK: int = 2
DEFAULT_DROPOUT: float = 0.4
PIXEL_SCALE: float = 1.0 / 255.0
# Batch-norm moving-average momentum for backbones (Keras' default). MobileNetV3 ships 0.999, tuned for long
# ImageNet runs: in a run of a few thousand steps its moving statistics stay near their initial values, and a
# network trained from random weights then predicts one class for every face at inference (measured: validation
# stuck at the majority class while training accuracy rose to 82%).
BACKBONE_BN_MOMENTUM: float = 0.99


BACKBONE_NONE: str = "none"
# Values of `weights` for a backbone: None (random initialisation), IMAGENET (Keras downloads the ImageNet
# weights, or finds them in ~/.keras/models), or the path of a local weights file for the backbone without its top.
IMAGENET: str = "imagenet"


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A Keras application used as the feature extractor."""

    build: Callable[..., keras.Model]  # keras.applications constructor
    preprocess: Callable  # its preprocess_input: RGB 0..255 -> what the backbone expects
    input_size: int  # default side the 48x48 face is resized to
    min_input_size: int  # the application's minimum side
    extra: dict = dataclasses.field(default_factory=dict)  # further constructor arguments


BACKBONES: dict[str, Backbone] = {
    "inceptionv3": Backbone(keras.applications.InceptionV3, keras.applications.inception_v3.preprocess_input,
                            75, 75),
    "resnet50": Backbone(keras.applications.ResNet50, keras.applications.resnet50.preprocess_input, 64, 32),
    "vgg16": Backbone(keras.applications.VGG16, keras.applications.vgg16.preprocess_input, 64, 32),
    # MobileNetV3 scales its input itself (include_preprocessing); its preprocess_input passes pixels through.
    "mobilenetv3small": Backbone(keras.applications.MobileNetV3Small,
                                 keras.applications.mobilenet_v3.preprocess_input, 96, 32,
                                 {"include_preprocessing": True}),
}
BACKBONE_CHOICES: tuple[str, ...] = (BACKBONE_NONE, *BACKBONES)


def build_network(
    num_classes: int = len(CLASS_NAMES),
    block_filters: tuple[int, ...] = DEFAULT_BLOCK_FILTERS,
    dropout: float = DEFAULT_DROPOUT,
    backbone: str = BACKBONE_NONE,
    weights: str | None = None,
    input_size: int | None = None,
) -> keras.Model:
    """The from-scratch CNN (backbone "none"), or `backbone` adapted to 48x48x1 faces (see module docstring).

    `weights` and `input_size` (default: the backbone's own) apply to backbones only.
    """
    if backbone == BACKBONE_NONE:
        return _build_cnn(num_classes, block_filters, dropout)
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONE_CHOICES)}")
    spec = BACKBONES[backbone]
    size = input_size or spec.input_size
    inputs = keras.Input(shape=INPUT_SHAPE, name="images")
    x = layers.Resizing(size, size, interpolation="bilinear", name="resize")(inputs) if size != INPUT_SHAPE[0] \
        else inputs
    x = layers.Concatenate(axis=-1, name="grey_to_rgb")([x, x, x])
    x = spec.preprocess(x)
    with warnings.catch_warnings():
        # MobileNetV3 warns that its 224x224 ImageNet weights serve other sizes: intended, it is convolutional.
        warnings.filterwarnings("ignore", message=".*Weights for input shape .* will be loaded as the default")
        features = spec.build(include_top=False, weights=weights, input_shape=(size, size, 3), **spec.extra)
    for layer in features.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = min(layer.momentum, BACKBONE_BN_MOMENTUM)
    x = features(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=f"facelabel_{backbone}")


def _build_cnn(num_classes: int, block_filters: tuple[int, ...], dropout: float) -> keras.Model:
    """The from-scratch classifier: conv blocks (conv-BN-ReLU x2, max-pool), global pooling, dropout, logits."""
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
