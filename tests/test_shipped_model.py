"""The shipped default model, end to end on real FER2013 faces from the validation split it never trained on."""

import csv
import shutil

import pytest

from model.contract import DEFAULT_MODEL_DIR
from model.saved import load_classifier
from pipeline import run as job
from trainer import data as datasets

FACES_PER_CLASS = 150
# The minimum on the whole validation split is 88%; a 300-face sample has about +-2 points of noise.
MIN_SAMPLE_ACCURACY = 0.85
MIN_VALIDATION_ACCURACY = 0.88
MIN_VALIDATION_AUC = 0.94


@pytest.fixture(scope="module")
def default_model():
    return load_classifier(DEFAULT_MODEL_DIR)


def test_recorded_validation_metrics_meet_the_minimum(default_model):
    metrics = default_model.metadata.validation_metrics
    assert metrics["accuracy"] >= MIN_VALIDATION_ACCURACY
    assert metrics["roc_auc"] >= MIN_VALIDATION_AUC
    assert default_model.metadata.trained_on["split"]["validation"]["sad"] > 0


def test_pipeline_labels_unseen_real_faces(default_model, shared_faces, tmp_path):
    trained_on = default_model.metadata.trained_on
    split = datasets.split_examples(datasets.list_examples(shared_faces),
                                    trained_on["validation_fraction"], trained_on["split_seed"])
    truth = {}
    for label, name in enumerate(default_model.metadata.class_names):
        for example in [e for e in split.validation if e.label == label][:FACES_PER_CLASS]:
            target = tmp_path / "in" / name / f"{len(truth):04d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(example.path, target)
            truth[str(target)] = name
    summary = job.run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    with open(tmp_path / "out" / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["path"] for row in rows) == sorted(truth)
    assert summary["images_labelled"] == len(truth) and summary["images_failed"] == 0
    assert {row["model_version"] for row in rows} == {default_model.metadata.model_version}
    accuracy = sum(row["label"] == truth[row["path"]] for row in rows) / len(rows)
    assert accuracy >= MIN_SAMPLE_ACCURACY


def test_the_shipped_int8_copy_answers_like_the_saved_model(default_model, shared_faces):
    """The int8 copy beside the shipped model: its digest matches the metadata and, on validation faces, it gives
    the SavedModel's label to nearly every face (the recorded figures: 3 of 1,799 differ)."""
    import numpy as np

    from model.lite import load_int8_classifier

    lite = load_int8_classifier(DEFAULT_MODEL_DIR, threads=1)
    recorded = default_model.metadata.int8
    assert recorded["labels_changed"] <= 10 and recorded["accuracy"] >= MIN_VALIDATION_ACCURACY
    split = datasets.split_as_trained(datasets.list_examples(shared_faces), default_model.metadata.trained_on)
    images, _ = datasets.load_arrays(split.validation[:256])
    meta = default_model.metadata
    same = meta.decide(lite(images)) == meta.decide(default_model(images))
    assert same.mean() >= 0.98
    assert np.abs(lite(images) - default_model(images)).max() < 0.1
