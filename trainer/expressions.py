"""FER2013's other expressions as auxiliary training targets, and the happy/sad network served from them.

What `python -m trainer.task --extra-data-dir ../shared/data/fer2013/train-other` does:
1. Every image under `<extra-data-dir>/<expression>/` (angry, disgust, fear, neutral, surprise) becomes a
   training face of one more class, numbered after the served classes (happy 0, sad 1, then the others in
   name order). None of them goes into the validation or test split: those stay happy/sad faces of `--data-dir`.
2. The network is trained with one logit per expression, so it learns from all 28,700 faces what faces and
   expressions look like, not only from the 12,000 happy and sad ones (auxiliary targets; Goodfellow et al.,
   "Challenges in Representation Learning", 2013, describe FER2013's seven classes). Happy and sad faces keep
   their class-balanced weights; each other face weighs `--other-weight`.
3. Early stopping watches the happy/sad pair only: the ROC AUC of the softmax over the happy and sad logits on the
   happy/sad validation split (`PairAUC`).
4. The served network is the same network with its logits layer cut to the happy and sad columns
   (`served_network`): a softmax over those two is p(happy | happy or sad), so the serving signature, calibration
   and decision rule stay exactly as for a two-class network.
5. With `--finetune-epochs N` the seven-expression training is a pre-training: the served network is then
   fine-tuned on the happy and sad faces alone (`fine_tune`), the usual transfer-learning second stage (Yosinski et
   al., "How transferable are features in deep neural networks?", NeurIPS 2014), and the epoch with the best
   validation pair AUC is kept (none of them, if fine-tuning never beats the pre-trained network).
"""

import argparse
import dataclasses
import logging
import os

import keras
import numpy as np

from model.contract import CLASS_NAMES
from model.network import build_network
from trainer import augment, metrics
from trainer import data as datasets
from trainer.files import is_folder, is_local, list_files

# Weight of each face of another expression in the training loss (happy and sad faces average 1).
DEFAULT_OTHER_WEIGHT: float = 0.5
PAIR_AUC: str = "val_pair_auc"
LOGITS_LAYER: str = "logits"
# Fine-tuning's peak learning rate, as a share of the pre-training's (cosine decay to 0 from there, no warm-up):
# small enough to adjust the pre-trained features rather than relearn them.
FINETUNE_LEARNING_RATE_SHARE: float = 0.1
FINETUNE_SEED_OFFSET: int = 1000  # fine-tuning's shuffling and augmentation draw from their own seeds

log = logging.getLogger("trainer")


def other_expression_names(extra_dir: str) -> tuple[str, ...]:
    """The sub-folders of extra_dir that hold images, sorted; the served classes' names are refused.

    Raises FileNotFoundError if extra_dir is missing or holds no sub-folder, ValueError if one is named like a
    served class, in any letter case (its faces would be counted twice under two labels).
    """
    if not is_folder(extra_dir):
        raise FileNotFoundError(f"extra data folder not found: {extra_dir}")
    if is_local(extra_dir):
        names = sorted(entry.name for entry in os.scandir(extra_dir)
                       if entry.is_dir() and not entry.name.startswith("."))
    else:
        base = extra_dir.rstrip("/") + "/"
        names = sorted({path[len(base):].split("/")[0] for path in list_files(extra_dir)
                        if path.startswith(base) and "/" in path[len(base):]})
    if not names:
        raise FileNotFoundError(f"extra data folder has no sub-folder of images: {extra_dir}")
    served = sorted(name for name in names if name.casefold() in {c.casefold() for c in CLASS_NAMES})
    if served:
        raise ValueError(f"extra data folder {extra_dir} holds {', '.join(served)}: it is for other expressions "
                         f"than {', '.join(CLASS_NAMES)} (those come from --data-dir)")
    return tuple(names)


def list_other_examples(extra_dir: str, names: tuple[str, ...]) -> list[datasets.Example]:
    """The images of extra_dir/<name>/ for each of `names` (from `other_expression_names`), labelled
    len(CLASS_NAMES) + i for the i-th name. Raises ValueError if one of them holds no image."""
    examples = datasets.list_examples(os.fspath(extra_dir), names)
    empty = [name for i, name in enumerate(names) if not any(e.label == i for e in examples)]
    if empty:
        raise ValueError(f"extra data folder {extra_dir} has expression folders without images: {', '.join(empty)}")
    return [dataclasses.replace(e, label=e.label + len(CLASS_NAMES)) for e in examples]


def training_weights(labels: np.ndarray, other_weight: float) -> np.ndarray:
    """Per-face loss weights [n]: served classes balanced (each carries equal total weight, mean 1 over them);
    faces of other expressions (labels >= len(CLASS_NAMES)) weigh other_weight each."""
    served = labels < len(CLASS_NAMES)
    per_class = augment.class_weights(labels[served], len(CLASS_NAMES))
    return np.where(served, per_class[np.minimum(labels, len(CLASS_NAMES) - 1)], other_weight).astype(np.float32)


class PairAUC(keras.callbacks.Callback):
    """After each epoch, logs[PAIR_AUC] = ROC AUC of p(first class | first or second) on the validation faces.

    Put it before EarlyStopping in the callback list: Keras hands every callback the same logs dictionary.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 256):
        super().__init__()
        self.images, self.labels, self.batch_size = images, labels, batch_size

    def on_epoch_end(self, epoch, logs=None):
        logits = self.model.predict(self.images, batch_size=self.batch_size, verbose=0)[:, :len(CLASS_NAMES)]
        auc = metrics.roc_auc(self.labels == 0, metrics.softmax(logits)[:, 0])
        if logs is not None:
            logs[PAIR_AUC] = auc


def served_network(trained: keras.Model, block_filters: tuple[int, ...], dropout: float) -> keras.Model:
    """A two-class network with the trained weights; its logits layer keeps the served classes' columns.

    The architecture is the one `model.network.build_network` builds for two classes, so the exported model and
    `trainer.views` (which rebuilds networks from metadata) see an ordinary two-class network.
    """
    served = build_network(len(CLASS_NAMES), block_filters, dropout)
    for layer in served.layers:
        weights = trained.get_layer(layer.name).get_weights()
        if layer.name == LOGITS_LAYER:
            kernel, bias = weights
            weights = [kernel[:, :len(CLASS_NAMES)], bias[:len(CLASS_NAMES)]]
        layer.set_weights(weights)
    return served


@dataclasses.dataclass(frozen=True)
class FineTuning:
    """What `fine_tune` did: epochs run, the epoch whose weights are kept (0: the pre-trained network's), and the
    validation pair AUC before and after (None for a refit)."""

    epochs_run: int
    best_epoch: int
    pair_auc_before: float | None  # None: a refit, without validation faces
    pair_auc_after: float | None

    def as_config(self) -> dict:
        return {"finetune_epochs_run": self.epochs_run, "finetune_best_epoch": self.best_epoch,
                **({"finetune_pair_auc_before": round(self.pair_auc_before, 6),
                    "finetune_pair_auc_after": round(self.pair_auc_after, 6)}
                   if self.pair_auc_before is not None else {})}


def fine_tune(args: argparse.Namespace, served: keras.Model, images: np.ndarray, labels: np.ndarray,
              val_images: np.ndarray, val_labels: np.ndarray, weight_decay: float,
              targets: np.ndarray | None = None, stop_after: int | None = None) -> FineTuning:
    """Fine-tune `served` (from `served_network`) in place on happy/sad faces only, after pre-training on all
    expressions: `--finetune-epochs` epochs at FINETUNE_LEARNING_RATE_SHARE of `--learning-rate`, decaying to 0
    (cosine), with the training's augmentation (mixup included), class weights and label smoothing. The epoch is
    chosen on one pass per face (as early stopping chooses the pre-training's), also for a model served with
    mirror averaging.

    images [n, 48, 48, 1] (0..255) with labels [n] (0 happy, 1 sad), or soft targets [n, 2] (distillation);
    val_images and val_labels choose the epoch: the one with the best validation pair AUC is kept, or the
    pre-trained weights if no epoch beats them. A refit passes stop_after (its validation run's best fine-tuning
    epoch) and no validation faces: it trains that many epochs of the same schedule and keeps the last.
    """
    if stop_after is not None:
        return _refit_fine_tuning(args, served, images, labels, weight_decay, targets, stop_after)
    faces = _compiled_for_fine_tuning(args, served, images, labels, weight_decay, targets)
    before = served.get_weights()
    pair_auc = PairAUC(val_images, val_labels)
    pair_auc.set_model(served)
    logs: dict = {}
    pair_auc.on_epoch_end(-1, logs)
    auc_before = logs[PAIR_AUC]
    stopping = keras.callbacks.EarlyStopping(monitor=PAIR_AUC, mode="max", patience=args.finetune_epochs,
                                             restore_best_weights=True)
    history = served.fit(faces, epochs=args.finetune_epochs, callbacks=[pair_auc, stopping], shuffle=False,
                         verbose=2)
    epochs_run = len(history.history[PAIR_AUC])
    if stopping.best <= auc_before:  # the best epoch, whose weights stopping restored, is no better
        served.set_weights(before)
        result = FineTuning(epochs_run, 0, auc_before, auc_before)
    else:
        result = FineTuning(epochs_run, stopping.best_epoch + 1, auc_before, float(stopping.best))
    kept = (f"epoch {result.best_epoch} of {result.epochs_run} kept" if result.best_epoch else
            f"no epoch of {result.epochs_run} beat it: the pre-trained weights kept")
    log.info("fine-tuned on %d happy/sad faces: validation pair AUC %.4f -> %.4f (%s)", len(images),
             result.pair_auc_before, result.pair_auc_after, kept)
    return result


def _compiled_for_fine_tuning(args: argparse.Namespace, served: keras.Model, images: np.ndarray,
                              labels: np.ndarray, weight_decay: float, targets: np.ndarray | None):
    """Compile `served` with fine-tuning's optimiser and schedule; the seeded, augmented training batches."""
    seed = args.seed + FINETUNE_SEED_OFFSET
    faces = augment.train_dataset(images, labels, augment.class_weights(labels, len(CLASS_NAMES))[labels],
                                  len(CLASS_NAMES), seed=seed, batch_size=args.batch_size,
                                  augment=not args.no_augment, low_resolution=args.low_resolution,
                                  mixup_alpha=args.mixup, targets=targets)
    keras.utils.set_random_seed(seed)
    steps_per_epoch = int(np.ceil(len(images) / args.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate * FINETUNE_LEARNING_RATE_SHARE,
                                                      steps_per_epoch * args.finetune_epochs)
    served.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=weight_decay),
                   loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=args.label_smoothing))
    return faces


def _refit_fine_tuning(args: argparse.Namespace, served: keras.Model, images: np.ndarray, labels: np.ndarray,
                       weight_decay: float, targets: np.ndarray | None, epochs: int) -> FineTuning:
    """A refit's fine-tuning: `epochs` epochs of the `--finetune-epochs` schedule, no validation faces."""
    if epochs:
        faces = _compiled_for_fine_tuning(args, served, images, labels, weight_decay, targets)
        served.fit(faces, epochs=epochs, shuffle=False, verbose=2)
    log.info("fine-tuned on %d happy/sad faces for %d of %d epochs (refit)", len(images), epochs,
             args.finetune_epochs)
    return FineTuning(epochs, epochs, None, None)
