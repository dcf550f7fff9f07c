"""Reduced-precision exports (trainer.quantize): the conversions keep the model's answers and are scored honestly."""

import json

import numpy as np
import pytest

from conftest import write_synthetic_dataset
from model.lite import LiteClassifier
from model.saved import load_classifier
from trainer import quantize


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
    for name in quantize.VARIANTS:
        assert 0 <= variants[name]["labels_changed"] <= 40 and variants[name]["faces_per_second"] > 0
    assert variants["int8"]["megabytes"] < variants["float32"]["megabytes"]  # int8 weights: a smaller file
    assert "int8" in capsys.readouterr().out


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
