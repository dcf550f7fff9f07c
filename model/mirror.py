"""Mirror averaging at labelling time: each face's answer averaged with the answer for its mirror image.

Why: a facial expression reads the same mirrored, but a network's answers to a face and to its mirror image differ
(the shipped model gives 4.7% of its test faces the other label mirrored). Averaging the two steadies the answer
and ranks faces better; measured with the shipped model (trainer/RESULTS.md, "Mirror averaging where faces are
found"): FER2013 test faces ROC AUC 0.9823 -> 0.9858, muxspace photos 0.9553 -> 0.9588, faces pasted into scenes
given the bare face's label 91.88% -> 93.22%. It costs a second pass of the classifier per face, which is small
beside face detection in photos, so the job averages wherever it finds faces (`--mirror-average auto`) and keeps
one pass for ready crops (`--faces none`, the fast path).

Averaging the log-probabilities and applying softmax again is exactly averaging the logits before temperature and
softmax (a row's log-softmax differs from its logits by one constant, which softmax removes), so a model served
this way answers as the same network exported with mirror averaging inside (`trainer.export.ServingModule`). A
model whose network already averages (`training_config.mirror_average`) is served unchanged.
"""

import contextlib
import dataclasses

import numpy as np

from model.metadata import ModelMetadata
from model.saved import predict_in_batches

# Rows of a model served with mirror averaging carry its version with this suffix (as int8's `+int8`), so
# `--incremental` relabels when the setting changes.
MIRROR_VERSION_SUFFIX: str = "+mirror"
MIRROR_AUTO, MIRROR_ON, MIRROR_OFF = "auto", "on", "off"
MIRROR_SETTINGS: tuple[str, ...] = (MIRROR_AUTO, MIRROR_ON, MIRROR_OFF)
WIDTH_AXIS: int = 2  # faces are [batch, height, width, channels]
# Smallest probability taken before the logarithm: a float32 softmax can round to exactly 0. A classifier whose
# probabilities come in steps (the int8 copy: `probability_step`, 1/256) is floored at half a step instead, since its
# 0 means "below one step", not "impossible": one saturated pass must not outweigh the other.
PROBABILITY_FLOOR: float = 1e-30


def network_averages_mirror(metadata: ModelMetadata) -> bool:
    """True when the served network already averages each face with its mirror image (exported that way). Metadata
    without the key counts as averaging: the trainer's export always did unless told not to, and recorded it only
    later (as `trainer.refit` reads older metadata), so no second pass is added to such a model."""
    return bool(metadata.training_config.get("mirror_average", True))


def mirror_wanted(setting: str, finds_faces: bool) -> bool:
    """Whether to average with the mirror image: MIRROR_ON or MIRROR_OFF as said; MIRROR_AUTO where faces are
    found (detection costs far more than a second classifier pass), not for ready crops. Raises ValueError for
    any other setting."""
    if setting not in MIRROR_SETTINGS:
        raise ValueError(f"mirror averaging must be one of {MIRROR_SETTINGS}, got {setting!r}")
    return setting == MIRROR_ON or (setting == MIRROR_AUTO and finds_faces)


def answers_averaged(metadata: ModelMetadata) -> bool:
    """Whether a model as served (served_metadata) answers with mirror averaging: in its network or by serving."""
    return network_averages_mirror(metadata) or metadata.model_version.endswith(MIRROR_VERSION_SUFFIX)


def mirror_applies(metadata: ModelMetadata, wanted: bool) -> bool:
    """Whether serving adds a mirror pass: wanted, and the network does not average already."""
    return wanted and not network_averages_mirror(metadata)


def served_metadata(metadata: ModelMetadata, wanted: bool) -> ModelMetadata:
    """The metadata rows carry: the version marked MIRROR_VERSION_SUFFIX when serving adds the mirror pass."""
    if not mirror_applies(metadata, wanted):
        return metadata
    return dataclasses.replace(metadata, model_version=metadata.model_version + MIRROR_VERSION_SUFFIX)


def average_with_mirror(face_probabilities: np.ndarray, mirror_probabilities: np.ndarray,
                        floor: float = PROBABILITY_FLOOR) -> np.ndarray:
    """Probabilities [n, classes] of the averaged logits, from the probabilities [n, classes] of the faces and of
    their mirror images: softmax of the mean log-probability (see the module docstring), each probability taken
    as at least floor."""
    log_mean = (np.log(np.maximum(face_probabilities, floor)) + np.log(np.maximum(mirror_probabilities, floor))) / 2.0
    log_mean -= log_mean.max(axis=-1, keepdims=True)
    exp = np.exp(log_mean)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


class MirrorAveraged:
    """A classifier (anything called on float32 [n, 48, 48, 1] of 0..255 that returns probabilities [n, classes]
    and has `.metadata`: the SavedModel's `model.saved.Classifier`, the int8 `model.lite.LiteClassifier`) served
    with mirror averaging: one call on the faces, one on their mirror images (two calls of the batch's own size
    rather than one of twice its size: each new batch shape costs TensorFlow memory), then average_with_mirror.
    A classifier with a `lock` (the int8 copy's interpreter, re-planned for each new batch size) is held for both
    calls, so another thread's batch of another size does not come between them."""

    def __init__(self, classifier):
        self.classifier = classifier
        self.metadata = served_metadata(classifier.metadata, True)
        self.floor = max(PROBABILITY_FLOOR, getattr(classifier, "probability_step", 0.0) / 2)
        self.lock = getattr(classifier, "lock", None) or contextlib.nullcontext()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        mirrored = np.ascontiguousarray(np.flip(images, axis=WIDTH_AXIS))
        with self.lock:
            faces, mirrors = self.classifier(images), self.classifier(mirrored)
        return average_with_mirror(faces, mirrors, self.floor)

    def in_batches(self, images: np.ndarray) -> np.ndarray:
        """Probabilities [n, classes] of any number of faces [n, 48, 48, 1] (model.saved.predict_in_batches)."""
        return predict_in_batches(self, images, len(self.metadata.class_names))


def served(classifier, wanted: bool):
    """The classifier as the job serves it: wrapped in MirrorAveraged when mirror_applies, else unchanged."""
    return MirrorAveraged(classifier) if mirror_applies(classifier.metadata, wanted) else classifier
