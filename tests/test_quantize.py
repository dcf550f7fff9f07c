"""Reduced-precision exports (trainer.quantize): the conversions keep the model's answers and are scored honestly."""

import json

import numpy as np
import pytest

from conftest import train_small_model, write_synthetic_dataset
from model.lite import LiteClassifier
from model.saved import load_classifier
from trainer import quantize


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A model trained by trainer.task on its own folder, which records the faces it was trained on."""
    return train_small_model(tmp_path_factory.mktemp("trained"), 12, "--epochs", "1", "--batch-size", "8",
                             "--block-filters", "4,8", "--validation-fraction", "0.25")


def test_float_conversion_reproduces_the_saved_model_and_int8_is_scored_against_it(tiny_model_dir, tmp_path,
                                                                                   capsys):
    data_dir = write_synthetic_dataset(tmp_path / "data", per_class=20)
    json_path = tmp_path / "quantize.json"
    assert quantize.main(["--model", str(tiny_model_dir), "--data-dir", str(data_dir), "--split", "all",
                          "--threads", "1", "--json", str(json_path)]) == 0
    result = json.loads(json_path.read_text())
    variants = result["variants"]
    assert list(variants) == ["savedmodel", *quantize.VARIANTS] and result["faces"] == 40
    assert variants["savedmodel"]["labels_changed"] == 0
    assert variants["float32"]["largest_probability_change"] < 1e-4  # the conversion itself changes nothing
    assert variants["float32"]["accuracy"] == variants["savedmodel"]["accuracy"]
    for name in quantize.VARIANTS:  # clear synthetic faces: no variant changes more than one label
        assert variants[name]["labels_changed"] <= 1
        assert abs(variants[name]["accuracy"] - variants["savedmodel"]["accuracy"]) <= 1 / 40
    assert variants["int8"]["megabytes"] < variants["float32"]["megabytes"]  # int8 weights: a smaller file
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed[2:]] == ["savedmodel", *quantize.VARIANTS]


def test_write_keeps_the_int8_copy_with_its_digest_and_figures(tiny_model_dir, tmp_path):
    import shutil

    from model.lite import INT8_FILENAME, flatbuffer_digest, load_int8_classifier
    from model.metadata import ModelMetadata

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    data_dir = write_synthetic_dataset(tmp_path / "data", per_class=20)
    assert quantize.main(["--model", str(folder), "--data-dir", str(data_dir), "--split", "all", "--threads", "1",
                          "--write"]) == 0
    recorded = ModelMetadata.read(folder).int8
    assert recorded["sha256"] == flatbuffer_digest((folder / INT8_FILENAME).read_bytes())
    assert recorded["faces"] == 40 and recorded["split"] == "all" and 0 <= recorded["accuracy"] <= 1
    lite = load_int8_classifier(folder, threads=1)
    assert lite.metadata.model_version == "tiny-test-model+int8"


def test_calibration_needs_the_folder_the_model_was_trained_on(trained_model, tmp_path, capsys):
    data_dir, model_dir = trained_model
    other = write_synthetic_dataset(tmp_path / "other", per_class=7)
    assert quantize.main(["--model", str(model_dir), "--data-dir", str(other), "--split", "all"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --data-dir {other} is not the folder model") and "\n" not in err


def test_the_int8_model_answers_like_the_saved_model_on_clear_faces(tiny_model_dir):
    from conftest import synthetic_face

    faces = np.stack([np.asarray(synthetic_face(i % 2 == 0, seed=500 + i), np.float32)[..., None]
                      for i in range(16)])
    representative = np.stack([np.asarray(synthetic_face(i % 2 == 0, seed=900 + i), np.float32)[..., None]
                               for i in range(32)])
    lite = LiteClassifier(quantize.convert(str(tiny_model_dir), "int8", representative), threads=1)
    saved = load_classifier(tiny_model_dir)(faces)
    assert lite(faces).shape == saved.shape
    assert np.abs(lite(faces) - saved).max() < 0.1
    assert (lite(faces).argmax(axis=1) == saved.argmax(axis=1)).all()


def test_a_missing_model_is_one_error_line(tmp_path, capsys):
    write_synthetic_dataset(tmp_path / "data", per_class=2)
    assert quantize.main(["--model", str(tmp_path / "none"), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model folder not found") and "\n" not in err
