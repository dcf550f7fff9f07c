"""The shipped default model, end to end on real FER2013 faces from the test split it never trained on (it is a
refit: trained on its validation run's training and validation faces, the test faces held out)."""

import csv
import json
import shutil

import pytest

from model.contract import DEFAULT_MODEL_DIR
from model.mirror import MIRROR_VERSION_SUFFIX
from model.saved import load_classifier
from pipeline import run as job
from trainer import data as datasets
from trainer.task import TEST_METRICS_FILENAME

FACES_PER_CLASS = 150
# The minimum on the whole held-out split is 88%; a 300-face sample has about +-2 points of noise.
MIN_SAMPLE_ACCURACY = 0.85
MIN_TEST_ACCURACY = 0.88
MIN_TEST_AUC = 0.94


@pytest.fixture(scope="module")
def default_model():
    return load_classifier(DEFAULT_MODEL_DIR)


def unseen_faces(default_model, shared_faces) -> list[datasets.Example]:
    """The shipped model's test faces, carved from the shared folder by its recorded split (by content)."""
    split = datasets.split_as_trained(datasets.list_examples(shared_faces), default_model.metadata.trained_on)
    assert not split.validation  # a refit: its validation run's validation faces are among its training faces
    return split.test


def test_recorded_test_metrics_meet_the_minimum(default_model):
    metrics = json.loads((DEFAULT_MODEL_DIR / TEST_METRICS_FILENAME).read_text())
    assert metrics["model_version"] == default_model.metadata.model_version
    assert metrics["accuracy"] >= MIN_TEST_ACCURACY and metrics["roc_auc"] >= MIN_TEST_AUC
    split = default_model.metadata.trained_on["split"]
    assert split["test"]["sad"] > 0 and metrics["images"] == sum(split["test"].values())


def test_pipeline_labels_unseen_real_faces(default_model, shared_faces, tmp_path):
    unseen = unseen_faces(default_model, shared_faces)
    truth = {}
    for label, name in enumerate(default_model.metadata.class_names):
        for example in [e for e in unseen if e.label == label][:FACES_PER_CLASS]:
            target = tmp_path / "in" / name / f"{len(truth):04d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(example.path, target)
            truth[str(target)] = name
    summary = job.run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    with open(tmp_path / "out" / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["path"] for row in rows) == sorted(truth)
    assert summary["images_labelled"] == len(truth) and summary["images_failed"] == 0
    # The default mode finds faces, and averages each with its mirror image (the shipped network is one pass).
    assert {row["model_version"] for row in rows} == {default_model.metadata.model_version + MIRROR_VERSION_SUFFIX}
    accuracy = sum(row["label"] == truth[row["path"]] for row in rows) / len(rows)
    assert accuracy >= MIN_SAMPLE_ACCURACY


def test_the_shipped_int8_copy_answers_like_the_saved_model(default_model, shared_faces):
    """The int8 copy beside the shipped model: its digest matches the metadata and, on test faces, it gives the
    SavedModel's label to nearly every face (the recorded figures: at most a few of 1,799 differ)."""
    import numpy as np

    from model.lite import load_int8_classifier

    lite = load_int8_classifier(DEFAULT_MODEL_DIR, threads=1)
    recorded = default_model.metadata.int8
    assert recorded["labels_changed"] <= 10 and recorded["accuracy"] >= MIN_TEST_ACCURACY
    assert recorded["split"] == datasets.TEST
    images, _ = datasets.load_arrays(unseen_faces(default_model, shared_faces)[:256])
    meta = default_model.metadata
    same = meta.decide(lite(images)) == meta.decide(default_model(images))
    assert same.mean() >= 0.98
    assert np.abs(lite(images) - default_model(images)).max() < 0.1


def test_make_train_refits_the_recorded_validation_run_with_its_recipe(default_model, shared_faces, monkeypatch):
    """`make train`'s trainer command, parsed as the trainer parses it: the refit's recipe check passes against
    trainer/validation_run.json, and the shipped model is that refit (its choices and recipe)."""
    import shlex
    import subprocess

    from conftest import PROJECT_ROOT
    from trainer import options, refit

    printed = subprocess.run(["make", "-s", "-n", "train"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, check=True).stdout
    command = next(line for line in printed.splitlines() if " -m trainer.task " in line)
    monkeypatch.chdir(PROJECT_ROOT)  # the Makefile's paths are relative to the project
    args = options.parse_args(shlex.split(command.split(" -m trainer.task ", 1)[1]))
    kept = refit.choices_of(args.refit_of)
    refit.check_recipe(kept, args)  # raises naming each option that differs from the validation run's
    meta = default_model.metadata
    assert meta.trained_on[datasets.REFIT_KEY] == kept.model_version
    assert (meta.threshold, meta.temperature) == (kept.threshold, kept.temperature)
    assert meta.training_config["epochs_run"] == kept.epochs
    asked = options.recipe(args)
    assert asked == {key: meta.training_config.get(key) for key in asked}
