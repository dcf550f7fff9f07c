"""Refit: train once more on the training and validation faces together, keeping an earlier run's choices.

A validation split costs training faces: with `--test-fraction 0.15` the candidates learn from 8,713 happy/sad
faces while 1,531 only steer early stopping, the temperature and the threshold. The usual remedy ("refit on all
the development data", e.g. Hastie, Tibshirani and Friedman, The Elements of Statistical Learning, 2nd ed.,
section 7.10; scikit-learn's `refit=True`) is to make those choices on a validation run, then train the same recipe
again on training + validation faces for the number of epochs the validation run trained, and serve the
validation run's temperature and threshold. `--refit-of MODEL_DIR` does this: it reads the validation run's split
settings, epochs, temperature and threshold from its `facelabel.json`; the test split, if any, stays untouched,
so its figures remain honest. The epochs are those of the weights the validation run serves (early stopping
restores its best epoch, even when it ran to the end), on the learning-rate schedule it had; a run recorded before
its best epoch was (before 2026-12-01) is refitted for all its epochs when it ran them all, and refused otherwise.
A run fine-tuned after pre-training (`--finetune-epochs`) is refitted the same way twice: pre-training to its best
epoch, then fine-tuning to its best fine-tuning epoch on its fine-tuning schedule.
"""

import argparse
import dataclasses
from pathlib import Path

from model.metadata import METADATA_FILENAME, RULE_THRESHOLD, ModelMetadata
from model.network import BACKBONE_NONE, DEFAULT_BLOCK_FILTERS, DEFAULT_DROPOUT
from model.saved import ModelLoadError, check_model_dir
from trainer import data as datasets
from trainer import expressions, options


@dataclasses.dataclass(frozen=True)
class Choices:
    """What a refit keeps from its validation run: the split settings (so the same test faces stay out), the
    epochs it trained, and its temperature, threshold and validation report."""

    model_version: str
    trained_on: dict
    training_config: dict
    epochs: int  # trained
    schedule_epochs: int  # the cosine schedule's length
    best_epoch_known: bool
    temperature: float
    threshold: float
    validation_metrics: dict
    # The fine-tuning epoch whose weights it serves (--finetune-epochs; 0: the pre-trained ones, or none run).
    finetune_best_epoch: int = 0


def read_metadata(model: str | Path) -> ModelMetadata:
    """The metadata of a validation run: a local model folder, or its `facelabel.json` alone (all a refit reads;
    a copy kept in the repository lets `make train` refit without the validation run's weights).

    Raises ModelLoadError (one line) for a folder that is not a model or a file that is not such metadata.
    """
    path = Path(model)
    try:
        if path.is_file():
            return ModelMetadata.from_json(path.read_text(encoding="utf-8"))
        return check_model_dir(path)
    except ModelLoadError as err:
        raise ModelLoadError(f"--refit-of: {err}") from None
    except (OSError, ValueError, TypeError) as err:  # unreadable, not JSON, or JSON without a model's keys
        raise ModelLoadError(f"--refit-of: {path} is not a model's {METADATA_FILENAME}: {err}") from None


def choices_of(model_dir: str | Path) -> Choices:
    """The choices recorded by the validation run in model_dir (local model folder, or its `facelabel.json`).

    Raises ModelLoadError (one line) for a folder or file that is not a model's, ValueError for a model trained
    without a validation split (itself a refit), without a threshold rule, or recorded without its best epoch and
    stopped before its last one (the epochs to train again are not known). `split` checks the faces,
    `check_recipe` the options.
    """
    meta = read_metadata(model_dir)
    trained_on = meta.trained_on or {}
    if trained_on.get(datasets.REFIT_KEY):
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} is itself a refit (it has no validation "
                         "split whose choices could be kept)")
    if meta.decision_rule != RULE_THRESHOLD:
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} has no decision threshold to keep")
    config = meta.training_config or {}
    epochs = int(config.get("best_epoch") or config.get("epochs_run") or 0)
    if epochs < 1:
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} does not record how many epochs it trained")
    if "best_epoch" not in config and epochs != config.get("max_epochs"):
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} stopped after {epochs} of "
                         f"{config.get('max_epochs')} epochs and does not record which epoch's weights it kept "
                         "(trained before 2026-12-01): train it again, then refit that run")
    return Choices(
        model_version=meta.model_version,
        trained_on=dict(trained_on),
        training_config={**config, "align_crops": meta.aligned_crops},  # what the model is served, as the job reads it
        epochs=epochs,
        schedule_epochs=int(config.get("schedule_epochs") or config.get("max_epochs") or epochs),
        best_epoch_known="best_epoch" in config,
        temperature=float(meta.temperature),
        threshold=float(meta.threshold),
        validation_metrics=dict(meta.validation_metrics or {}),
        finetune_best_epoch=int(config.get("finetune_best_epoch") or 0),
    )


def split(choices: Choices, listed: list[datasets.Example]) -> datasets.Split:
    """The split a refit trains on: its validation run's training and validation faces together, no validation
    faces, the same test faces. listed: every face of --data-dir (before any per-class cap).

    Raises ValueError when these are not the faces the validation run was trained on (data.split_as_trained).
    """
    try:
        return datasets.merged_for_refit(datasets.split_as_trained(listed, choices.trained_on))
    except ValueError:
        raise ValueError(f"--refit-of: --data-dir does not hold the faces {choices.model_version} was trained on "
                         f"(folder {choices.trained_on.get('data_dir')!r}, by content)") from None


# What a key missing from older metadata held: the trainer's defaults of the time (training_config records
# low_resolution, other_weight, teacher_weight and ema_momentum only when they apply, and older models no backbone
# keys).
RECORDED_DEFAULTS: dict = {
    "batch_size": 64, "learning_rate": 2e-3, "label_smoothing": 0.05, "dropout": DEFAULT_DROPOUT,
    "block_filters": list(DEFAULT_BLOCK_FILTERS), "augment": True, "mixup": 0.0, "ema_momentum": 0.0,
    "low_resolution": 0.0,
    "other_weight": None, "finetune_epochs": 0, "teacher_weight": None, "mirror_average": True, "align_crops": False,
    "backbone": BACKBONE_NONE,
    "backbone_weights": None, "backbone_input_size": None,
}
# Recipe keys that weigh what another option brings (recorded only with it).
WEIGHTS_OF_OPTIONS: tuple[str, ...] = ("other_weight", "teacher_weight")
# Recipe keys recorded as the opposite of their option.
NEGATED_FLAGS: dict[str, str] = {"augment": "--no-augment", "mirror_average": "--no-mirror-average"}
# Recipe keys recorded as their option (a flag without a value).
PLAIN_FLAGS: tuple[str, ...] = ("align_crops",)


def check_recipe(choices: Choices, args: argparse.Namespace) -> None:
    """Refuse a refit whose recipe options (`options.recipe`) differ from its validation run's (as recorded in its
    metadata): the choices it keeps were made for that recipe. Raises ValueError naming each option that differs."""
    config, trained_on = choices.training_config, choices.trained_on
    mine = options.recipe(args)
    differing = []
    for key, default in RECORDED_DEFAULTS.items():
        asked = mine.get(key, default)
        had = default if config.get(key) is None else config[key]
        if asked == had or (key in WEIGHTS_OF_OPTIONS and None in (asked, had)):
            continue  # a weight without its option: the option's own line below says what differs
        if key in NEGATED_FLAGS:
            differing.append(f"{NEGATED_FLAGS[key]} {not asked} (it had {not had})")
        elif key in PLAIN_FLAGS:
            flag = f"--{key.replace('_', '-')}"
            differing.append(f"drop {flag} (its run had none)" if asked else f"add {flag} (its run had it)")
        else:
            shown = [",".join(map(str, value)) if isinstance(value, list) else value for value in (asked, had)]
            differing.append(f"--{key.replace('_', '-')} {shown[0]} (it had {shown[1]})")
    expressions_asked = (",".join(expressions.other_expression_names(args.extra_data_dir)) if args.extra_data_dir
                         else "none")
    expressions_had = ",".join(trained_on.get("other_expressions", [])) or "none"
    if expressions_asked != expressions_had:
        differing.append(f"--extra-data-dir (its expressions) {expressions_asked} (it had {expressions_had})")
    if bool(args.teacher) != bool(config.get("teachers")):
        differing.append(f"--teacher: its teachers were {', '.join(config.get('teachers') or ['none'])}")
    if differing:
        raise ValueError(f"--refit-of {choices.model_version}: give its recipe options again; these differ: "
                         + "; ".join(differing))


def check_teachers(choices: Choices, versions: list[str]) -> None:
    """Refuse teachers (model versions, in --teacher order) other than the validation run's. Raises ValueError."""
    recorded = list(choices.training_config.get("teachers") or [])
    if versions != recorded:
        raise ValueError(f"--refit-of {choices.model_version}: give its teachers again ({', '.join(recorded)}); "
                         f"these are {', '.join(versions)}")


def check_other_faces(choices: Choices, count: int) -> None:
    """Refuse an --extra-data-dir holding another number of faces than the validation run's. Raises ValueError."""
    recorded = choices.trained_on.get("other_faces")
    if recorded is not None and count != recorded:
        raise ValueError(f"--refit-of {choices.model_version}: --extra-data-dir holds {count} faces of other "
                         f"expressions; it was trained with {recorded}")
