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
    epochs: int
    temperature: float
    threshold: float
    validation_metrics: dict


def choices_of(model_dir: str | Path) -> Choices:
    """The choices recorded by the validation run in model_dir (local folder).

    Raises ModelLoadError (one line) for a folder that is not a model, ValueError for a model trained without a
    validation split (itself a refit) or without a threshold rule. `split` checks the faces.
    """
    meta: ModelMetadata = check_model_dir(model_dir)
    trained_on = meta.trained_on or {}
    if trained_on.get(datasets.REFIT_KEY):
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} is itself a refit (it has no validation "
                         "split whose choices could be kept)")
    if meta.decision_rule != RULE_THRESHOLD:
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} has no decision threshold to keep")
    epochs = int((meta.training_config or {}).get("epochs_run", 0))
    if epochs < 1:
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} does not record how many epochs it trained")
    return Choices(
        model_version=meta.model_version,
        trained_on=dict(trained_on),
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
