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
    validation_fraction: float
    split_seed: int
    test_fraction: float
    epochs: int
    temperature: float
    threshold: float
    validation_metrics: dict


def choices_of(model_dir: str | Path, data_digest: str) -> Choices:
    """The choices recorded by the validation run in model_dir (local folder).

    data_digest: `data.listing_digest` of this run's --data-dir. Raises ModelLoadError (one line) for a folder
    that is not a model, ValueError for a model trained on other faces, one trained without a validation split
    (itself a refit), or one without a threshold rule.
    """
    meta: ModelMetadata = check_model_dir(model_dir)
    trained_on = meta.trained_on or {}
    if trained_on.get(datasets.REFIT_KEY):
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} is itself a refit (it has no validation "
                         "split whose choices could be kept)")
    if trained_on.get("data_digest") != data_digest:
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} was trained on other faces than --data-dir "
                         f"holds (folder {trained_on.get('data_dir')!r})")
    if meta.decision_rule != RULE_THRESHOLD:
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} has no decision threshold to keep")
    epochs = int((meta.training_config or {}).get("epochs_run", 0))
    if epochs < 1:
        raise ValueError(f"--refit-of {model_dir}: {meta.model_version} does not record how many epochs it trained")
    return Choices(
        model_version=meta.model_version,
        validation_fraction=float(trained_on.get("validation_fraction", datasets.DEFAULT_VALIDATION_FRACTION)),
        split_seed=int(trained_on.get("split_seed", datasets.DEFAULT_SPLIT_SEED)),
        test_fraction=float(trained_on.get("test_fraction", 0.0)),
        epochs=epochs,
        temperature=float(meta.temperature),
        threshold=float(meta.threshold),
        validation_metrics=dict(meta.validation_metrics or {}),
    )

