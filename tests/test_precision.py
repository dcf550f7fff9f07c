"""`pipeline.run --precision int8`: the model's int8 copy labels like the SavedModel and marks its rows."""

import shutil
import threading

import numpy as np
import pytest

from conftest import assert_a_changed_setting_relabels, read_rows, synthetic_face, synthetic_face_folder
from model.lite import INT8_FILENAME, INT8_VERSION_SUFFIX, load_int8_classifier
from model.saved import load_classifier
from pipeline import run as job
from pipeline.model_handler import ClassifierHandler


@pytest.fixture
def faces(tmp_path):
    return synthetic_face_folder(tmp_path / "in", 12, seed=700)


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
    assert_a_changed_setting_relabels(args, ["--precision", "int8"], images=12)


def test_int8_without_a_copy_is_one_error_line(tiny_model_dir, faces, tmp_path, capsys):
    status = job.main(["--input", str(faces), "--output", str(tmp_path / "o"), "--model", str(tiny_model_dir),
                       "--precision", "int8"])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model tiny-test-model has no int8 copy") and "\n" not in err


def test_the_handler_refuses_an_unknown_precision():
    with pytest.raises(ValueError, match="precision must be one of"):
        ClassifierHandler(None, precision="int4")


def test_a_copy_left_from_another_model_is_refused(tiny_int8_model_dir, tiny_model_dir, faces, tmp_path, capsys):
    folder = tmp_path / "retrained"
    shutil.copytree(tiny_model_dir, folder)  # a new model exported into a folder that held an older int8 copy
    shutil.copy(tiny_int8_model_dir / INT8_FILENAME, folder / INT8_FILENAME)
    status = job.main(["--input", str(faces), "--output", str(tmp_path / "o"), "--model", str(folder),
                       "--precision", "int8"])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert "is not the int8 copy its metadata records" in err and "\n" not in err


def face_batch(count, seed):
    return np.stack([np.asarray(synthetic_face(i % 2 == 0, seed=seed + i), np.float32)[..., None]
                     for i in range(count)])


def test_the_int8_copy_answers_any_batch_size_like_the_saved_model(tiny_int8_model_dir):
    lite = load_int8_classifier(tiny_int8_model_dir, threads=1)
    saved = load_classifier(tiny_int8_model_dir)
    for count in (16, 3, 64, 16):  # the interpreter is re-planned whenever the size changes
        batch = face_batch(count, seed=count)
        answers = lite(batch)
        assert answers.shape == (count, 2)
        assert (answers.argmax(axis=1) == saved(batch).argmax(axis=1)).all()
        assert np.abs(answers - saved(batch)).max() < 0.05


def test_the_int8_copy_can_be_shared_between_threads(tiny_int8_model_dir):
    lite = load_int8_classifier(tiny_int8_model_dir, threads=1)
    batches = [face_batch(count, seed=100 * count) for count in (4, 32, 8, 16) * 5]
    expected = [lite(batch) for batch in batches]
    results = [None] * len(batches)

    def work(indexes):
        for i in indexes:
            results[i] = lite(batches[i])

    threads = [threading.Thread(target=work, args=(range(k, len(batches), 4),)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(np.array_equal(got, want) for got, want in zip(results, expected))
