"""Refit (`trainer/refit.py`, `trainer.task --refit-of`): train + validation faces, the earlier run's choices kept."""

import json

import pytest

from conftest import train_small_model
from model.saved import load_classifier
from trainer import data as datasets
from trainer import evaluate, task

PER_CLASS = 30
SMALL = ["--batch-size", "16", "--block-filters", "4,8"]


@pytest.fixture(scope="module")
def validation_run(tmp_path_factory):
    """A small model trained with a test split and a validation split, and its data folder."""
    return train_small_model(tmp_path_factory.mktemp("validation-run"), PER_CLASS, *SMALL, "--epochs", "2",
                             "--test-fraction", "0.2", "--validation-fraction", "0.25")


def test_a_refit_trains_on_validation_faces_too_and_keeps_the_choices(validation_run, tmp_path):
    data_dir, first_dir = validation_run
    first = load_classifier(first_dir).metadata
    refit_dir = tmp_path / "refit"
    assert task.main(["--data-dir", str(data_dir), "--output-dir", str(refit_dir), *SMALL,
                      "--refit-of", str(first_dir)]) == 0
    refitted = load_classifier(refit_dir).metadata
    counts, first_counts = refitted.trained_on["split"], first.trained_on["split"]
    assert counts["test"] == first_counts["test"]  # the same test faces stay out
    for name in ("happy", "sad"):
        assert counts["train"][name] == first_counts["train"][name] + first_counts["validation"][name]
        assert counts["validation"][name] == 0
    assert refitted.trained_on[datasets.REFIT_KEY] == first.model_version
    assert (refitted.threshold, refitted.temperature) == (first.threshold, first.temperature)
    assert refitted.training_config["epochs_run"] == first.training_config["epochs_run"] == 2
    assert refitted.model_version != first.model_version
    # Its test figures are scored on the same faces, and evaluate carves the same test split from its metadata.
    recorded = json.loads((refit_dir / task.TEST_METRICS_FILENAME).read_text())
    json_path = tmp_path / "test.json"
    assert evaluate.main(["--model", str(refit_dir), "--data-dir", str(data_dir), "--split", "test",
                          "--json", str(json_path), "--bootstrap", "0"]) == 0
    report = json.loads(json_path.read_text())
    assert report["images"] == recorded["images"] == sum(counts["test"].values())
    assert report["confusion_matrix"] == recorded["confusion_matrix"]
    # No validation faces are left to score: the refit trained on them.
    assert evaluate.main(["--model", str(refit_dir), "--data-dir", str(data_dir), "--split", "validation"]) == 2


def test_refit_of_what_cannot_be_refitted_is_one_clear_line(validation_run, tmp_path, capsys):
    data_dir, first_dir = validation_run
    refit_dir = tmp_path / "refit"
    assert task.main(["--data-dir", str(data_dir), "--output-dir", str(refit_dir), *SMALL,
                      "--refit-of", str(first_dir)]) == 0
    capsys.readouterr()
    cases = [
        (["--refit-of", str(refit_dir)], "is itself a refit"),  # no validation split left to keep choices from
        (["--refit-of", str(tmp_path / "missing")], "model folder not found"),
        (["--refit-of", str(first_dir), "--max-minutes", "5"], "cannot be combined with --max-minutes"),
        (["--refit-of", str(first_dir), "--block-filters", "4,16", "--low-resolution", "0.3"],
         "these differ: --block-filters [4, 16] (it had [4, 8]); --low-resolution 0.3 (it had 0.0)"),
    ]
    # A run stopped before its last planned epoch (here by its time budget) did not record the epochs it kept.
    stopped = train_small_model(tmp_path / "stopped", PER_CLASS, *SMALL, "--epochs", "3", "--max-minutes", "0.001",
                                "--test-fraction", "0.2")[1]
    cases.append((["--refit-of", str(stopped)], "stopped after 1 of 3 epochs"))
    other_data = train_small_model(tmp_path / "other", PER_CLASS + 2, *SMALL, "--epochs", "1")[0]
    for flags, words in cases:
        try:
            status = task.main(["--data-dir", str(data_dir), "--output-dir", str(tmp_path / "out"), *SMALL, *flags])
        except SystemExit as exit_:  # argparse's usage error
            status = exit_.code
        assert status == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert task.main(["--data-dir", str(other_data), "--output-dir", str(tmp_path / "out"), *SMALL,
                      "--refit-of", str(first_dir)]) == 2
    assert "not the faces the model was trained on" in capsys.readouterr().err
