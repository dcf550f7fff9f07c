"""Trainer smoke run on a few dozen images, and evaluation of what it exported."""

import json

import pytest

from conftest import write_synthetic_dataset
from model.saved import load_classifier
from trainer import evaluate, task

PER_CLASS = 30


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data_dir = write_synthetic_dataset(tmp_path_factory.mktemp("data"), PER_CLASS)
    output_dir = tmp_path_factory.mktemp("model") / "exported"
    status = task.main(["--data-dir", str(data_dir), "--output-dir", str(output_dir), "--epochs", "2",
                        "--batch-size", "16", "--block-filters", "4,8", "--validation-fraction", "0.2"])
    assert status == 0
    return data_dir, output_dir


def test_trainer_exports_a_loadable_model_with_metadata(trained):
    data_dir, output_dir = trained
    classifier = load_classifier(output_dir)
    meta = classifier.metadata
    assert meta.class_names == ("happy", "sad")
    assert meta.trained_on["split"]["validation"] == {"happy": 6, "sad": 6}
    assert meta.trained_on["split"]["train"] == {"happy": 24, "sad": 24}
    assert meta.model_version.startswith("facelabel-cnn-")
    assert 0.0 <= meta.threshold <= 1.0 and meta.temperature > 0
    assert meta.validation_metrics["images"] == 12
    assert meta.training_config["epochs_run"] == 2
    assert json.loads((output_dir / "metrics.json").read_text())["images"] == 12


def test_evaluate_reproduces_the_recorded_validation_metrics(trained, tmp_path, capsys):
    data_dir, output_dir = trained
    json_path = tmp_path / "eval.json"
    assert evaluate.main(["--model", str(output_dir), "--data-dir", str(data_dir), "--split", "validation",
                          "--json", str(json_path)]) == 0
    report = json.loads(json_path.read_text())
    recorded = load_classifier(output_dir).metadata.validation_metrics
    assert report["images"] == 12
    assert report["confusion_matrix"] == recorded["confusion_matrix"]
    assert report["roc_auc"] == pytest.approx(recorded["roc_auc"], abs=1e-6)
    assert "accuracy" in capsys.readouterr().out


def test_evaluate_all_counts_every_image(trained, tmp_path):
    data_dir, output_dir = trained
    json_path = tmp_path / "eval.json"
    assert evaluate.main(["--model", str(output_dir), "--data-dir", str(data_dir), "--json", str(json_path)]) == 0
    assert json.loads(json_path.read_text())["images"] == 2 * PER_CLASS


def test_missing_data_dir_is_one_clear_line(tmp_path, capsys):
    status = task.main(["--data-dir", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "out")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data folder not found") and "Traceback" not in err
