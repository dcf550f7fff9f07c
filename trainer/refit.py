"""Refit: train once more on the training and validation faces together, keeping an earlier run's choices.

A validation split costs training faces: with `--test-fraction 0.15` the candidates learn from 8,713 happy/sad
faces while 1,531 only steer early stopping, the temperature and the threshold. The usual remedy ("refit on all
the development data", e.g. Hastie, Tibshirani and Friedman, The Elements of Statistical Learning, 2nd ed.,
section 7.10; scikit-learn's `refit=True`) is to make those choices on a validation run, then train the same recipe
again on training + validation faces for the number of epochs the validation run trained, and serve the
validation run's temperature and threshold. `--refit-of MODEL_DIR` does this: it reads the validation run's split
settings, epochs, temperature and threshold from its `facelabel.json`; the test split, if any, stays untouched,
so its figures remain honest.
"""

import argparse
import dataclasses
from pathlib import Path

from model.metadata import RULE_THRESHOLD, ModelMetadata
from model.saved import check_model_dir
from trainer import data as datasets

@dataclasses.dataclass(frozen=True)
class Choices:
    """What a refit keeps from its validation run: the split settings (so the same test faces stay out), the
    epochs it trained, and its temperature, threshold and validation report."""

    model_version: str
    trained_on: dict
    training_config: dict
    epochs: int
    temperature: float
    threshold: float
    validation_metrics: dict


def choices_of(model_dir: str | Path) -> Choices:
    """The choices recorded by the validation run in model_dir (local folder).

    Raises ModelLoadError (one line) for a folder that is not a model, ValueError for a model trained without a
    validation split (itself a refit), without a threshold rule, or stopped before its last planned epoch (early
    stopping restored an earlier epoch's weights, or a time budget shortened it: the epochs to train again are
    not recorded). `split` checks the faces, `check_recipe` the options.
    """
    meta: ModelMetadata = check_model_dir(model_dir)
    trained_on = meta.trained_on or {}
    if trained_on.get(datasets.REFIT_KEY):
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} is itself a refit (it has no validation "
                         "split whose choices could be kept)")
    if meta.decision_rule != RULE_THRESHOLD:
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} has no decision threshold to keep")
    config = meta.training_config or {}
    epochs = int(config.get("epochs_run", 0))
    if epochs < 1:
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} does not record how many epochs it trained")
    if epochs != config.get("max_epochs"):
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} stopped after {epochs} of "
                         f"{config.get('max_epochs')} epochs, so the epochs whose weights it kept are not recorded")
    return Choices(
        model_version=meta.model_version,
        trained_on=dict(trained_on),
        training_config=dict(config),
        epochs=epochs,
        temperature=float(meta.temperature),
        threshold=float(meta.threshold),
        validation_metrics=dict(meta.validation_metrics or {}),
    )


def split(choices: Choices, listed: list[datasets.Example]) -> datasets.Split:
    """The split a refit trains on: its validation run's training and validation faces together, no validation
    faces, the same test faces. listed: every face of --data-dir (before any per-class cap).

    Raises ValueError when these are not the faces the validation run was trained on (data.split_as_trained).
    """
    try:
        return datasets.merged_for_refit(datasets.split_as_trained(listed, choices.trained_on))
    except ValueError as err:
        raise ValueError(f"--refit-of {choices.model_version}: {err}") from None


def check_recipe(choices: Choices, args: argparse.Namespace) -> None:
    """Refuse a refit whose recipe options differ from its validation run's (as recorded in its metadata): the
    choices it keeps were made for that recipe. Raises ValueError naming each option that differs."""
    config, trained_on = choices.training_config, choices.trained_on
    asked = {
        "--batch-size": (args.batch_size, config.get("batch_size")),
        "--learning-rate": (args.learning_rate, config.get("learning_rate")),
        "--label-smoothing": (args.label_smoothing, config.get("label_smoothing")),
        "--dropout": (args.dropout, config.get("dropout")),
        "--block-filters": (list(args.block_filters), config.get("block_filters")),
        "--no-augment": (args.no_augment, not config.get("augment", True)),
        "--mixup": (args.mixup, config.get("mixup", 0.0)),
        "--low-resolution": (args.low_resolution, config.get("low_resolution", 0.0)),
        "--no-mirror-average": (args.no_mirror_average, not config.get("mirror_average", True)),
        "--backbone": (args.backbone, config.get("backbone")),
        "--extra-data-dir": (Path(args.extra_data_dir).name if args.extra_data_dir else None,
                             trained_on.get("extra_data_dir")),
    }
    if args.extra_data_dir:
        asked["--other-weight"] = (args.other_weight, config.get("other_weight"))
    if args.teacher or config.get("teachers"):
        asked["--teacher"] = ("given" if args.teacher else None, "given" if config.get("teachers") else None)
    differing = [f"{flag} {mine} (it had {theirs})" for flag, (mine, theirs) in asked.items() if mine != theirs]
    if differing:
        raise ValueError(f"--refit-of {choices.model_version}: give its recipe options again; these differ: "
                         + "; ".join(differing))
