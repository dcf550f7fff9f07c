"""`pipeline.run --precision int8`: the model's int8 copy labels like the SavedModel and marks its rows."""

import csv

import pytest

from conftest import synthetic_face
from model.lite import INT8_VERSION_SUFFIX
from pipeline import run as job
from pipeline.model_handler import ClassifierHandler


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def faces(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    for i in range(12):
        synthetic_face(i % 2 == 0, seed=700 + i).save(root / f"face_{i:02d}.png")
    return root


def test_int8_labels_like_the_saved_model_and_marks_its_rows(tiny_int8_model_dir, faces, tmp_path):
    common = ["--input", str(faces), "--model", str(tiny_int8_model_dir), "--faces", "none"]
    job.run([*common, "--output", str(tmp_path / "f32")])
    summary = job.run([*common, "--output", str(tmp_path / "int8"), "--precision", "int8"])
    float_rows = {r["path"]: r for r in read_rows(tmp_path / "f32" / "labels.csv")}
    int8_rows = {r["path"]: r for r in read_rows(tmp_path / "int8" / "labels.csv")}
    assert set(int8_rows) == set(float_rows) and len(int8_rows) == 12
    assert all(int8_rows[p]["label"] == float_rows[p]["label"] for p in float_rows)
    assert all(abs(float(int8_rows[p]["p_happy"]) - float(float_rows[p]["p_happy"])) < 0.05 for p in float_rows)
    assert {r["model_version"] for r in int8_rows.values()} == {"tiny-test-model" + INT8_VERSION_SUFFIX}
    assert summary["precision"] == "int8" and summary["model_version"] == "tiny-test-model" + INT8_VERSION_SUFFIX


def test_changing_the_precision_relabels_an_incremental_run(tiny_int8_model_dir, faces, tmp_path):
    args = ["--input", str(faces), "--output", str(tmp_path / "out"), "--model", str(tiny_int8_model_dir),
            "--faces", "none", "--incremental"]
    job.run(args)
    assert job.run([*args, "--precision", "int8"])["images_carried_over"] == 0
    assert job.run([*args, "--precision", "int8"])["images_carried_over"] == 12
    assert job.run(args)["images_carried_over"] == 0


def test_int8_without_a_copy_is_one_error_line(tiny_model_dir, faces, tmp_path, capsys):
    status = job.main(["--input", str(faces), "--output", str(tmp_path / "o"), "--model", str(tiny_model_dir),
                       "--precision", "int8"])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model tiny-test-model has no int8 copy") and "\n" not in err


def test_the_handler_refuses_an_unknown_precision():
    with pytest.raises(ValueError, match="precision must be one of"):
        ClassifierHandler(None, precision="int4")
