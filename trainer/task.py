"""Train the happy/sad network on a folder-per-class dataset and export it as a SavedModel with metadata.

Workflow:
1. List `<data-dir>/<class>/**` images and carve the deterministic, duplicate-aware validation split.
2. Decode every image with the shared `model.preprocess.preprocess_image`.
3. Train with augmentation, class weights for the imbalance, label smoothing, a cosine learning-rate schedule
   and early stopping on validation AUC (best weights restored).
4. Calibrate on the validation split (temperature), choose the decision threshold there, and record the
   validation metrics.
5. Export the SavedModel (mirror averaging + temperature + softmax inside) and `facelabel.json` beside it.

`--backbone` swaps the from-scratch CNN for an ImageNet network (InceptionV3, ResNet50, VGG16, MobileNetV3Small)
adapted to the 48x48 greyscale face inside the model; `--backbone-weights imagenet` or a local weights file
starts it from pretrained weights (default: random initialisation). The export is the same either way.

`--extra-data-dir` adds other expressions as auxiliary classes (trainer/expressions.py); `--teacher` distils
already trained models into this one (trainer/distill.py); `--test-fraction` holds out faces for final figures.

`--data-dir` and `--output-dir` may be local or gs://: data is read through Beam's FileSystems, and a remote
model is exported to a local temporary folder and then uploaded.

    python -m trainer.task --data-dir ../shared/data/fer2013/train --output-dir /tmp/model
"""

import argparse
import datetime
import json
import logging
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from model.contract import CLASS_NAMES
from model.metadata import RULE_THRESHOLD, ModelMetadata
from model.network import (BACKBONE_CHOICES, BACKBONE_NONE, BACKBONES, DEFAULT_BLOCK_FILTERS, DEFAULT_DROPOUT,
                           IMAGENET, build_network)
from trainer.files import check_reachable, local_folder_for
from trainer import augment
from trainer import data as datasets
from trainer import distill, expressions, metrics
from trainer.export import ServingModule, batched_logits, export_model, weights_digest

METRICS_FILENAME: str = "metrics.json"
TEST_METRICS_FILENAME: str = "test_metrics.json"
WARMUP_EPOCHS: int = 2
WEIGHT_DECAY: float = 1e-4

log = logging.getLogger("trainer")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainer.task", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True,
                        help="folder with one sub-folder of images per class, local or gs://")
    parser.add_argument("--output-dir", required=True,
                        help="where the SavedModel and facelabel.json go, local or gs://")
    parser.add_argument("--epochs", type=int, default=40, help="maximum epochs (early stopping may end sooner)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="peak learning rate (AdamW)")
    parser.add_argument("--max-minutes", type=float, default=0,
                        help="time budget for the whole run (0 = none): after the first epoch the learning-rate "
                             "schedule is shortened to the epochs that fit, and training stops before overrunning")
    parser.add_argument("--patience", type=int, default=15, help="epochs without validation AUC gain before stopping")
    parser.add_argument("--label-smoothing", type=float, default=0.05)
    parser.add_argument("--dropout", type=float, default=DEFAULT_DROPOUT)
    parser.add_argument("--block-filters", default=",".join(map(str, DEFAULT_BLOCK_FILTERS)),
                        help="comma-separated filters per conv block, e.g. 32,64,128,256 (backbone none only)")
    parser.add_argument("--backbone", choices=BACKBONE_CHOICES, default=BACKBONE_NONE,
                        help="feature extractor: none = the from-scratch CNN; otherwise an ImageNet network adapted "
                             "to 48x48 greyscale faces inside the model")
    parser.add_argument("--backbone-weights", default=None, metavar="imagenet|FILE",
                        help="start the backbone from these weights: 'imagenet' (downloaded by Keras, or found in "
                             "~/.keras/models) or a local weights file of the backbone without its top "
                             "(default: random initialisation)")
    parser.add_argument("--backbone-input-size", type=int, default=0,
                        help="side the face is resized to for the backbone (0 = the backbone's default: "
                             + ", ".join(f"{name} {spec.input_size}" for name, spec in BACKBONES.items()) + ")")
    parser.add_argument("--no-augment", action="store_true", help="train without data augmentation")
    parser.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                        help="mixup: blend each training face and its label with another's, weight ~ Beta(ALPHA, "
                             "ALPHA) (0 = off; 0.2 is the usual value)")
    parser.add_argument("--no-mirror-average", action="store_true",
                        help="serve the plain network instead of averaging each face with its mirror image")
    parser.add_argument("--extra-data-dir", default=None,
                        help="folder with one sub-folder per other expression (e.g. fer2013/train-other): its faces "
                             "train the network as auxiliary classes; only happy/sad is served (trainer/expressions.py)")
    parser.add_argument("--other-weight", type=float, default=expressions.DEFAULT_OTHER_WEIGHT,
                        help="loss weight of each face of another expression (happy and sad faces average 1; "
                             "default %(default)s)")
    parser.add_argument("--low-resolution", type=float, default=0.0, metavar="P",
                        help="probability that a training face is shrunk to 16-36 px and enlarged back, as small "
                             "faces in photos are (0 = off)")
    parser.add_argument("--teacher", action="append", default=[], metavar="MODEL_DIR",
                        help="distil: blend each happy/sad face's target with this exported model's answer (repeat "
                             "for several teachers, averaged); trainer/distill.py")
    parser.add_argument("--teacher-weight", type=float, default=distill.DEFAULT_TEACHER_WEIGHT,
                        help="share of each target taken from the teachers (default %(default)s)")
    parser.add_argument("--validation-fraction", type=float, default=datasets.DEFAULT_VALIDATION_FRACTION,
                        help="fraction of each class's faces held out for choices (default %(default)s; with "
                             "--test-fraction, of the faces left after the test split)")
    parser.add_argument("--test-fraction", type=float, default=0.0,
                        help="carve this fraction of the faces as a test split first, on which nothing is chosen "
                             "(0 = none); with the default seed it is the validation split of models trained "
                             "without one")
    parser.add_argument("--split-seed", type=int, default=datasets.DEFAULT_SPLIT_SEED)
    parser.add_argument("--seed", type=int, default=1, help="seed for weights, shuffling and augmentation")
    parser.add_argument("--max-images-per-class", type=int, default=0,
                        help="use at most this many images per class (0 = all); for quick smoke runs")
    args = parser.parse_args(argv)
    try:
        args.block_filters = tuple(int(f) for f in args.block_filters.split(","))
    except ValueError:
        parser.error(f"--block-filters must be comma-separated integers, got {args.block_filters!r}")
    if args.mixup < 0:
        parser.error("--mixup must be positive (or 0 for off)")
    if args.max_minutes < 0:
        parser.error("--max-minutes must be positive (or 0 for no budget)")
    if not 0.0 < args.validation_fraction < 1.0:
        parser.error("--validation-fraction must be between 0 and 1")
    if not 0.0 <= args.test_fraction < 1.0 or args.test_fraction + args.validation_fraction >= 1.0:
        parser.error("--test-fraction must be 0 or more, and with --validation-fraction below 1")
    if not 0.0 <= args.low_resolution <= 1.0:
        parser.error("--low-resolution must be a probability between 0 and 1")
    if args.other_weight < 0:
        parser.error("--other-weight must be 0 or more")
    if args.low_resolution and args.no_augment:
        parser.error("--low-resolution is an augmentation: it cannot be used with --no-augment")
    if args.other_weight != expressions.DEFAULT_OTHER_WEIGHT and not args.extra_data_dir:
        parser.error("--other-weight weighs the faces of --extra-data-dir: give that folder too")
    if not 0.0 < args.teacher_weight <= 1.0:
        parser.error("--teacher-weight must be above 0 and at most 1")
    if args.teacher_weight != distill.DEFAULT_TEACHER_WEIGHT and not args.teacher:
        parser.error("--teacher-weight weighs the answers of --teacher: give a teacher too")
    if args.teacher and args.mixup:
        parser.error("--teacher and --mixup cannot be combined (mixup blends the targets the teachers give)")
    if args.extra_data_dir and args.backbone != BACKBONE_NONE:
        parser.error("--extra-data-dir works with the from-scratch CNN only (--backbone none)")
    if args.backbone == BACKBONE_NONE and (args.backbone_weights or args.backbone_input_size):
        parser.error("--backbone-weights and --backbone-input-size need a --backbone")
    if args.backbone_input_size and args.backbone_input_size < BACKBONES[args.backbone].min_input_size:
        parser.error(f"--backbone-input-size must be at least {BACKBONES[args.backbone].min_input_size} "
                     f"for {args.backbone}")
    return args


class AdjustableCosineDecay(keras.optimizers.schedules.CosineDecay):
    """Keras' warm-up + cosine schedule whose decay length can still be shortened after training has started.

    Same arithmetic as CosineDecay (so a run without a budget gives the same weights); only `decay_steps` lives
    in a variable, which the compiled training step reads on every step.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.decay_steps = keras.Variable(float(self.decay_steps), dtype="float32", trainable=False,
                                          name="decay_steps")

    def shorten(self, decay_steps: int) -> None:
        self.decay_steps.assign(float(decay_steps))

    def get_config(self) -> dict:
        return {**super().get_config(), "decay_steps": float(self.decay_steps.numpy())}


class TimeBudget(keras.callbacks.Callback):
    """Fits training into `--max-minutes`: measures the first epoch, then shortens the schedule to the epochs
    that fit (so the learning rate still decays properly) and stops before an epoch would overrun the budget."""

    def __init__(self, budget_seconds: float, started: float, schedule: AdjustableCosineDecay,
                 steps_per_epoch: int, max_epochs: int):
        super().__init__()
        self.budget_seconds, self.started, self.schedule = budget_seconds, started, schedule
        self.steps_per_epoch, self.max_epochs = steps_per_epoch, max_epochs
        self.fit_started = 0.0
        self.planned_epochs = max_epochs

    def on_train_begin(self, logs=None):
        self.fit_started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        epochs_done = epoch + 1
        seconds_per_epoch = (now - self.fit_started) / epochs_done
        left = self.budget_seconds - (now - self.started)
        if epochs_done == 1:
            self.planned_epochs = max(1, min(self.max_epochs, epochs_done + int(left // seconds_per_epoch)))
            if self.planned_epochs < self.max_epochs:
                self.schedule.shorten(self.steps_per_epoch * self.planned_epochs)
                log.info("time budget: %.0f s per epoch, %.0f s left: schedule shortened to %d epochs",
                         seconds_per_epoch, left, self.planned_epochs)
        if epochs_done >= self.planned_epochs or left < seconds_per_epoch:
            self.model.stop_training = epochs_done < self.max_epochs


class BackboneWeightsError(ValueError):
    """The backbone's starting weights could not be obtained; the message says why in one line."""


def make_network(args: argparse.Namespace, num_outputs: int = len(CLASS_NAMES)) -> keras.Model:
    """The network to train (num_outputs logits); backbone weights that cannot be had give one
    BackboneWeightsError."""
    weights = args.backbone_weights
    if weights and weights != IMAGENET and not os.path.isfile(weights):
        raise BackboneWeightsError(f"backbone weights file not found: {weights}")
    try:
        return build_network(num_outputs, args.block_filters, args.dropout, backbone=args.backbone,
                             weights=weights, input_size=args.backbone_input_size or None)
    except Exception as err:  # Keras raises plain Exception for a failed download, ValueError for a wrong file
        if not weights:
            raise
        reason = " ".join(str(err).split())[:300]
        hint = (" (no network? put the file in ~/.keras/models or pass --backbone-weights FILE)"
                if weights == IMAGENET else "")
        raise BackboneWeightsError(f"cannot load {weights} weights for backbone {args.backbone}{hint}: "
                                   f"{type(err).__name__}: {reason}") from None


def train(args: argparse.Namespace) -> dict:
    started = time.monotonic()
    keras.utils.set_random_seed(args.seed)
    # Same seed, same data -> same weights: deterministic kernels cost little on CPU.
    tf.config.experimental.enable_op_determinism()
    check_reachable(args.output_dir)  # a wrong bucket fails now, not after training
    other_names = expressions.other_expression_names(args.extra_data_dir) if args.extra_data_dir else ()
    num_outputs = len(CLASS_NAMES) + len(other_names)
    # Backbone weights that cannot be had fail now too (the data does not touch the seed).
    network = make_network(args, num_outputs)
    examples = datasets.first_per_class(datasets.list_examples(args.data_dir), args.max_images_per_class)
    split = datasets.split_examples(examples, args.validation_fraction, args.split_seed, args.test_fraction)
    log.info("split: %s", json.dumps(split.counts()))
    x_train, y_train = datasets.load_arrays(split.train)
    x_val, y_val = datasets.load_arrays(split.validation)
    if len(np.unique(y_train)) < len(CLASS_NAMES) or len(np.unique(y_val)) < len(CLASS_NAMES):
        raise ValueError("every class needs images in both the training and the validation split")
    if args.test_fraction and len({e.label for e in split.test}) < len(CLASS_NAMES):
        raise ValueError(f"--test-fraction {args.test_fraction} leaves a class without test images: use a larger "
                         "fraction or more images")
    weights = augment.class_weights(y_train, len(CLASS_NAMES))[y_train].astype(np.float32)
    teacher_p = np.zeros((0, len(CLASS_NAMES)), np.float32)
    if args.teacher:
        teachers = distill.load_teachers(args.teacher)
        distill.check_teachers(teachers, Path(args.data_dir).name, examples, split)
        teacher_p = distill.teacher_probabilities(teachers, x_train)
        log.info("teachers agree with the labels on %.4f of the training faces",
                 float((teacher_p.argmax(axis=1) == y_train).mean()))
    if other_names:
        others = datasets.first_per_class(expressions.list_other_examples(args.extra_data_dir, other_names),
                                 args.max_images_per_class)
        x_other, y_other = datasets.load_arrays(others)
        log.info("other expressions: %s", json.dumps(dict(zip(other_names, np.bincount(
            y_other - len(CLASS_NAMES), minlength=len(other_names)).tolist()))))
        x_train, y_train = np.concatenate([x_train, x_other]), np.concatenate([y_train, y_other])
        weights = expressions.training_weights(y_train, args.other_weight)

    steps_per_epoch = int(np.ceil(len(x_train) / args.batch_size))
    schedule = AdjustableCosineDecay(
        initial_learning_rate=args.learning_rate / 10, decay_steps=steps_per_epoch * args.epochs,
        warmup_target=args.learning_rate, warmup_steps=steps_per_epoch * min(WARMUP_EPOCHS, args.epochs - 1))
    watched = [keras.metrics.AUC(from_logits=True, name="auc")] if not other_names else []
    network.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=WEIGHT_DECAY),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=args.label_smoothing),
        metrics=["categorical_accuracy", *watched],
    )
    callbacks = [expressions.PairAUC(x_val, y_val)] if other_names else []
    callbacks.append(keras.callbacks.EarlyStopping(monitor=expressions.PAIR_AUC if other_names else "val_auc",
                                                   mode="max", patience=args.patience, restore_best_weights=True))
    if args.max_minutes:
        callbacks.append(TimeBudget(args.max_minutes * 60, started, schedule, steps_per_epoch, args.epochs))
    history = network.fit(
        augment.train_dataset(x_train, y_train, weights, num_outputs, seed=args.seed, batch_size=args.batch_size,
                              augment=not args.no_augment, low_resolution=args.low_resolution,
                              mixup_alpha=args.mixup,
                              targets=distill.soft_targets(y_train, teacher_p, args.teacher_weight, num_outputs)
                              if args.teacher else None),
        validation_data=None if other_names else (x_val, keras.utils.to_categorical(y_val, num_outputs)),
        epochs=args.epochs,
        callbacks=callbacks,
        verbose=2,
    )
    trained = network
    if other_names:
        network = expressions.served_network(trained, args.block_filters, args.dropout)

    module = ServingModule(network, mirror_average=not args.no_mirror_average)
    temperature, threshold, report = metrics.calibrated_report(y_val, batched_logits(module, x_val), CLASS_NAMES)
    module.temperature.assign(temperature)
    positive = CLASS_NAMES[0]

    created = datetime.datetime.now(datetime.timezone.utc)
    train_seconds = time.monotonic() - started
    metadata = ModelMetadata(
        model_version=f"facelabel-{'cnn' if args.backbone == BACKBONE_NONE else args.backbone}-{created:%Y%m%d}-"
                      f"{weights_digest(trained)}",
        decision_rule=RULE_THRESHOLD,
        positive_class=positive,
        threshold=threshold,
        temperature=temperature,
        trained_on={"data_dir": Path(args.data_dir).name, "split": split.counts(),
                    "validation_fraction": args.validation_fraction, "split_seed": args.split_seed,
                    **({"test_fraction": args.test_fraction} if args.test_fraction else {}),
                    **({"max_images_per_class": args.max_images_per_class} if args.max_images_per_class else {}),
                    **({"extra_data_dir": Path(args.extra_data_dir).name, "other_expressions": list(other_names),
                        "other_faces": int(len(y_train) - len(split.train))} if other_names else {})},
        validation_metrics=report,
        created_at=created.isoformat(timespec="seconds"),
        training_config={
            "epochs_run": len(history.history["loss"]), "max_epochs": args.epochs, "batch_size": args.batch_size,
            "learning_rate": args.learning_rate, "max_minutes": args.max_minutes or None,
            "label_smoothing": args.label_smoothing,
            "dropout": args.dropout, "block_filters": list(args.block_filters), "augment": not args.no_augment,
            "mixup": args.mixup,
            **({"low_resolution": args.low_resolution} if args.low_resolution else {}),
            **({"other_weight": args.other_weight} if other_names else {}),
            **({"teachers": [t.metadata.model_version for t in teachers], "teacher_weight": args.teacher_weight}
               if args.teacher else {}),
            "mirror_average": not args.no_mirror_average, "seed": args.seed,
            "backbone": args.backbone,
            "backbone_weights": (os.path.basename(args.backbone_weights) if args.backbone_weights
                                 and args.backbone_weights != IMAGENET else args.backbone_weights),
            "backbone_input_size": (args.backbone_input_size or BACKBONES[args.backbone].input_size
                                    if args.backbone != BACKBONE_NONE else None),
            "parameters": int(network.count_params()), "train_seconds": round(train_seconds, 1),
        },
    )
    with local_folder_for(args.output_dir) as export_dir:
        export_model(module, metadata, export_dir)
        (Path(export_dir) / METRICS_FILENAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        if split.test:  # stated, never chosen on: everything above used the validation split only
            test_report = test_metrics(module, split.test, metadata)
            (Path(export_dir) / TEST_METRICS_FILENAME).write_text(json.dumps(test_report, indent=2) + "\n",
                                                                  encoding="utf-8")
            log.info("test split (%d faces): accuracy %.4f, AUC %.4f, %s recall %.4f, ECE %.4f",
                     test_report["images"], test_report["accuracy"], test_report["roc_auc"], CLASS_NAMES[-1],
                     test_report["per_class"][CLASS_NAMES[-1]]["recall"], test_report["ece"])
    log.info("exported %s to %s: accuracy %.4f, AUC %.4f, %s recall %.4f, ECE %.4f (T=%.3f, threshold %.3f)",
             metadata.model_version, args.output_dir, report["accuracy"], report["roc_auc"], CLASS_NAMES[-1],
             report["per_class"][CLASS_NAMES[-1]]["recall"], report["ece"], temperature, threshold)
    return report


def test_metrics(module: ServingModule, test: list[datasets.Example], metadata: ModelMetadata) -> dict:
    """The exported model's report on the test split, with the temperature and decision rule chosen on
    validation (as recorded in its metadata)."""
    images, labels = datasets.load_arrays(test)
    probabilities = metrics.softmax(batched_logits(module, images) / metadata.temperature)
    report = metrics.classification_report(labels, metadata.decide(probabilities), probabilities, CLASS_NAMES)
    return {"model_version": metadata.model_version, "split": "test", **report}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        train(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
