"""Train the happy/sad network on a folder-per-class dataset and export it as a SavedModel with metadata.

Workflow:
1. List `<data-dir>/<class>/**` images and carve the deterministic, duplicate-aware validation split.
2. Decode every image with the shared `model.preprocess.preprocess_image` (with `--align-crops`: find and align
   each crop's face as the labelling job does, `model.align.crop_inputs`).
3. Train with augmentation, class weights for the imbalance, label smoothing, a cosine learning-rate schedule
   and early stopping on validation AUC (best weights restored).
4. Calibrate on the validation split (temperature), choose the decision threshold there, and record the
   validation metrics.
5. Export the SavedModel (mirror averaging + temperature + softmax inside) and `facelabel.json` beside it.

`--backbone` swaps the from-scratch CNN for an ImageNet network (InceptionV3, ResNet50, VGG16, MobileNetV3Small)
adapted to the 48x48 greyscale face inside the model; `--backbone-weights imagenet` or a local weights file
starts it from pretrained weights (default: random initialisation). The export is the same either way.

`--extra-data-dir` adds other expressions as auxiliary classes (trainer/expressions.py); `--teacher` distils
already trained models into this one (trainer/distill.py); `--test-fraction` holds out faces for final figures;
`--refit-of` trains again on training + validation faces with an earlier run's choices (trainer/refit.py).

`--data-dir` and `--output-dir` may be local or gs://: data is read through Beam's FileSystems, and a remote
model is exported to a local temporary folder and then uploaded.

    python -m trainer.task --data-dir ../shared/data/fer2013/train --output-dir /tmp/model
"""

# First: TensorFlow starts here with its C++ start-up noise filtered (see model/console.py).
from model import console  # isort: skip

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

from model.align import FACE_ALIGNMENT
from model.contract import CLASS_NAMES
from model.metadata import RULE_THRESHOLD, ModelMetadata
from model.network import BACKBONE_NONE, IMAGENET, build_network
from trainer.files import check_reachable, local_folder_for
from trainer import augment
from trainer import data as datasets
from trainer import distill, expressions, machine, metrics, options, refit
from trainer.export import ServingModule, batched_logits, export_model, weights_digest
from trainer.machine import TEST_METRICS_FILENAME

METRICS_FILENAME: str = "metrics.json"
WARMUP_EPOCHS: int = 2
WEIGHT_DECAY: float = 1e-4

log = logging.getLogger("trainer")
LOG_FORMAT = "%(asctime)s %(name)s %(message)s"


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
    kept = refit.choices_of(args.refit_of) if args.refit_of else None
    if kept:
        refit.check_recipe(kept, args)  # before the network is built and the data read
    other_names = expressions.other_expression_names(args.extra_data_dir) if args.extra_data_dir else ()
    num_outputs = len(CLASS_NAMES) + len(other_names)
    # Backbone weights that cannot be had fail now too (the data does not touch the seed).
    network = make_network(args, num_outputs)
    listed = datasets.list_examples(args.data_dir)
    if kept:
        if not kept.best_epoch_known:
            log.warning("%s does not record which epoch's weights it served (trained before 2026-12-01): the refit "
                        "trains all its %d epochs", kept.model_version, kept.epochs)
        split = refit.split(kept, listed)
        if not split.test:
            log.warning("%s was trained without a test split: the refit holds no faces out", kept.model_version)
        args.epochs = kept.schedule_epochs
        for name in ("validation_fraction", "split_seed", "test_fraction", "max_images_per_class"):
            setattr(args, name, kept.trained_on.get(name, getattr(args, name)))  # recorded as its run's
        log.info("refit of %s: its training and validation faces, %d epochs of a %d-epoch schedule, T=%.3f, "
                 "threshold %.3f", kept.model_version, kept.epochs, kept.schedule_epochs, kept.temperature,
                 kept.threshold)
    else:
        split = datasets.split_examples(datasets.first_per_class(listed, args.max_images_per_class),
                                        args.validation_fraction, args.split_seed, args.test_fraction)
    log.info("split: %s", json.dumps(split.counts()))
    x_train, y_train = datasets.load_arrays(split.train, args.align_crops)
    x_val, y_val = datasets.load_arrays(split.validation, args.align_crops)
    if len(np.unique(y_train)) < len(CLASS_NAMES) or (not kept and len(np.unique(y_val)) < len(CLASS_NAMES)):
        raise ValueError("every class needs images in both the training and the validation split")
    if args.test_fraction and len({e.label for e in split.test}) < len(CLASS_NAMES):
        raise ValueError(f"--test-fraction {args.test_fraction} leaves a class without test images: use a larger "
                         "fraction or more images")
    weights = augment.class_weights(y_train, len(CLASS_NAMES))[y_train].astype(np.float32)
    teacher_p = np.zeros((0, len(CLASS_NAMES)), np.float32)
    if args.teacher:
        teachers = distill.load_teachers(args.teacher)
        if kept:
            refit.check_teachers(kept, [t.metadata.model_version for t in teachers])
        distill.check_teachers(teachers, datasets.folder_name(args.data_dir), listed, split, args.align_crops)
        teacher_p = distill.teacher_probabilities(teachers, x_train)
        log.info("teachers agree with the labels on %.4f of the training faces",
                 float((teacher_p.argmax(axis=1) == y_train).mean()))
    if other_names:
        others = datasets.first_per_class(expressions.list_other_examples(args.extra_data_dir, other_names),
                                 args.max_images_per_class)
        x_other, y_other = datasets.load_arrays(others, args.align_crops)
        log.info("other expressions: %s", json.dumps(dict(zip(other_names, np.bincount(
            y_other - len(CLASS_NAMES), minlength=len(other_names)).tolist()))))
        if kept:
            refit.check_other_faces(kept, len(y_other))
        x_train, y_train = np.concatenate([x_train, x_other]), np.concatenate([y_train, y_other])
        weights = expressions.training_weights(y_train, args.other_weight)

    steps_per_epoch = int(np.ceil(len(x_train) / args.batch_size))
    epochs = kept.epochs if kept else args.epochs  # a refit trains its validation run's (best) epochs
    schedule = AdjustableCosineDecay(
        initial_learning_rate=args.learning_rate / 10, decay_steps=steps_per_epoch * args.epochs,
        warmup_target=args.learning_rate, warmup_steps=steps_per_epoch * min(WARMUP_EPOCHS, args.epochs - 1))
    watched = [augment.HardTargetAUC(from_logits=True, name="auc")] if not other_names else []
    network.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=WEIGHT_DECAY, **(
            {"use_ema": True, "ema_momentum": args.ema_momentum} if args.ema_momentum else {})),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=args.label_smoothing),
        metrics=["categorical_accuracy", *watched],
    )
    callbacks = [expressions.PairAUC(x_val, y_val)] if other_names and not kept else []
    if args.ema_momentum:
        averaged_steps = 1 / (1 - args.ema_momentum)
        total_steps = steps_per_epoch * epochs
        if total_steps < averaged_steps:  # the average's time constant, in steps, is longer than the run
            log.warning("--ema-momentum %g averages over about %.0f steps, more than this run's %d: the average "
                        "starts from the first step's weights, so the exported network stays close to them",
                        args.ema_momentum, averaged_steps, total_steps)
        # First, so that validation, early stopping's choice of epoch and the weights kept at the end are the
        # averaged ones (Keras swaps them in at each epoch's end and finalizes them after the last epoch).
        callbacks.insert(0, keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    stopping = None
    if not kept:  # a refit trains its validation run's epochs: nothing to stop on
        stopping = keras.callbacks.EarlyStopping(monitor=expressions.PAIR_AUC if other_names else "val_auc",
                                                 mode="max", patience=args.patience, restore_best_weights=True)
        callbacks.append(stopping)
    budget = None
    if args.max_minutes:
        budget = TimeBudget(args.max_minutes * 60, started, schedule, steps_per_epoch, args.epochs)
        callbacks.append(budget)
    history = network.fit(
        augment.train_dataset(x_train, y_train, weights, num_outputs, seed=args.seed, batch_size=args.batch_size,
                              augment=not args.no_augment, low_resolution=args.low_resolution,
                              mixup_alpha=args.mixup,
                              targets=distill.soft_targets(y_train, teacher_p, args.teacher_weight, num_outputs)
                              if args.teacher else None),
        validation_data=None if other_names or kept else (x_val, keras.utils.to_categorical(y_val, num_outputs)),
        epochs=epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, seeded (augment.train_dataset); Keras would only warn
        verbose=2,
    )
    trained = network
    if other_names:
        network = expressions.served_network(trained, args.block_filters, args.dropout)
    finetuned = None
    if args.finetune_epochs:
        pair = y_train < len(CLASS_NAMES)  # the happy/sad faces: the first ones, in teacher_p's order
        finetuned = expressions.fine_tune(
            args, network, x_train[pair], y_train[pair], x_val, y_val, WEIGHT_DECAY,
            targets=distill.soft_targets(y_train[pair], teacher_p, args.teacher_weight, len(CLASS_NAMES))
            if args.teacher else None, stop_after=kept.finetune_best_epoch if kept else None)
    if finetuned and finetuned.best_epoch:
        trained = network  # its weights are what the version names (kept pre-trained: the version of a run without)

    module = ServingModule(network, mirror_average=not args.no_mirror_average)
    if kept:
        temperature, threshold = kept.temperature, kept.threshold
        report = {**kept.validation_metrics, "choices_from": kept.model_version}  # its figures, not this network's
    else:
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
        aligned_crops=args.align_crops,
        trained_on={"data_dir": datasets.folder_name(args.data_dir), "data_digest": datasets.listing_digest(listed),
                    "split": split.counts(),
                    "validation_fraction": args.validation_fraction, "split_seed": args.split_seed,
                    **({"test_fraction": args.test_fraction} if args.test_fraction else {}),
                    **({datasets.REFIT_KEY: kept.model_version} if kept else {}),
                    **({"max_images_per_class": args.max_images_per_class} if args.max_images_per_class else {}),
                    **({"extra_data_dir": Path(args.extra_data_dir).name, "other_expressions": list(other_names),
                        "other_faces": int(len(y_train) - len(split.train))} if other_names else {})},
        validation_metrics=report,
        created_at=created.isoformat(timespec="seconds"),
        training_config={
            "epochs_run": len(history.history["loss"]), "max_epochs": args.epochs,
            # The epoch whose weights are served (early stopping restores the best one even when it does not stop)
            # and the epochs the learning-rate schedule decayed over: what a refit (trainer/refit.py) repeats.
            "best_epoch": stopping.best_epoch + 1 if stopping else len(history.history["loss"]),
            "schedule_epochs": budget.planned_epochs if budget else args.epochs,
            "max_minutes": args.max_minutes or None,
            **options.recipe(args),
            **({"teachers": [t.metadata.model_version for t in teachers]} if args.teacher else {}),
            # How the crops it learned were aligned: the job warns when it aligns faces otherwise (model.align).
            **({"face_alignment": FACE_ALIGNMENT} if args.align_crops else {}),
            **(finetuned.as_config() if finetuned else {}),
            "seed": args.seed,
            "parameters": int(network.count_params()), "train_seconds": round(train_seconds, 1),
            # Bit-for-bit equal weights need the same processor and libraries (trainer/machine.py).
            machine.MACHINE_KEY: machine.describe(),
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
    log.info("exported %s to %s: %saccuracy %.4f, AUC %.4f, %s recall %.4f, ECE %.4f (T=%.3f, threshold %.3f)",
             metadata.model_version, args.output_dir, f"validation figures of {kept.model_version} (refitted): "
             if kept else "", report["accuracy"], report["roc_auc"], CLASS_NAMES[-1],
             report["per_class"][CLASS_NAMES[-1]]["recall"], report["ece"], temperature, threshold)
    return report


def test_metrics(module: ServingModule, test: list[datasets.Example], metadata: ModelMetadata) -> dict:
    """The exported model's report on the test split, with the temperature and decision rule chosen on
    validation (as recorded in its metadata)."""
    images, labels = datasets.load_arrays(test, metadata.aligned_crops)
    probabilities = metrics.softmax(batched_logits(module, images) / metadata.temperature)
    report = metrics.classification_report(labels, metadata.decide(probabilities), probabilities, CLASS_NAMES)
    return {"model_version": metadata.model_version, "split": "test", **report}


def main(argv: list[str] | None = None) -> int:
    console.configure_logging("trainer", LOG_FORMAT)
    args = options.parse_args(argv, __doc__.split("\n")[0])
    try:
        with console.native_stderr_filtered_live(console.TRAINING_NOISE):
            train(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return console.USAGE_ERROR_STATUS
    return 0


if __name__ == "__main__":
    sys.exit(main())
