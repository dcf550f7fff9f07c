"""`trainer.photos`: the check of the job's face path on photos (accuracy, no-face share), on photos made here."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from conftest import paste_face, scene, shared_face_files
from model.contract import DEFAULT_MODEL_DIR
from model.mirror import MIRROR_VERSION_SUFFIX
from model.saved import load_classifier
from trainer import photos

FACES_PER_CLASS = 3
FACE_HEIGHT = 160


def test_scored_counts_an_image_without_a_face_as_wrong_and_undecided(tiny_model_dir):
    classifier = load_classifier(tiny_model_dir)  # threshold 0.5
    labels = np.array([0, 0, 1, 1, 1])  # happy, happy, sad, sad, sad
    p_happy = np.array([0.9, math.nan, 0.2, 0.7, 0.1])
    result = photos.scored(classifier, labels, p_happy)
    assert result["images"] == 5 and result["no_face"] == 1
    assert result["accuracy"] == pytest.approx(3 / 5, abs=1e-4)  # the faceless happy photo counts as wrong
    assert result["sad_recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["happy_recall"] == pytest.approx(1 / 2, abs=1e-4)  # the faceless happy photo is a miss
    assert result["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-4)
    # p_sad of the faceless photo is 0.5: it ranks above the sad photo called happy (0.3), below the others.
    assert result["roc_auc"] == pytest.approx(5 / 6, abs=1e-4)
    only_happy = photos.scored(classifier, labels[:2], p_happy[:2])  # a class the folder lacks is not averaged
    assert only_happy["balanced_accuracy"] == only_happy["happy_recall"] == pytest.approx(1 / 2, abs=1e-4)
    as_unreadable = photos.scored(classifier, labels, p_happy, unreadable=[1])  # the same NaN, from a bad file
    assert as_unreadable["no_face"] == 0 and as_unreadable["unreadable"] == 1
    assert as_unreadable["accuracy"] == result["accuracy"]


def photo_folder(root, shared_faces):
    for label in ("happy", "sad"):
        (root / label).mkdir(parents=True)
        for i, path in enumerate(shared_face_files(shared_faces, label, FACES_PER_CLASS)):
            photo = scene(seed=100 + i)
            paste_face(photo, Image.open(path), (200 + 60 * i, 240), FACE_HEIGHT, angle=5.0 * i)
            photo.save(root / label / f"{label}_{i}.jpg", quality=92)
    return root


def test_photos_and_faceless_folders_with_the_shipped_model(tmp_path, shared_faces, capsys):
    data_dir = photo_folder(tmp_path / "photos", shared_faces)
    faceless = tmp_path / "faceless"
    faceless.mkdir()
    for i in range(2):
        scene(seed=200 + i).save(faceless / f"scene_{i}.jpg", quality=92)
    Image.new("L", (320, 240), 128).save(faceless / "grey_frame.png")
    (faceless / "junk.jpg").write_text("not an image")  # unreadable: listed apart, not counted as no face
    with_a_face = tmp_path / "not-faceless"
    with_a_face.mkdir()
    photo = scene(seed=300)
    paste_face(photo, Image.open(shared_face_files(shared_faces, "happy", 1)[0]), (320, 240), FACE_HEIGHT)
    photo.save(with_a_face / "someone.jpg", quality=92)
    out = tmp_path / "checks.json"

    assert photos.main(["--model", str(DEFAULT_MODEL_DIR), "--data-dir", str(data_dir),
                        "--faceless", str(faceless), str(with_a_face), "--json", str(out)]) == 0

    results = json.loads(out.read_text())
    assert results["photos"]["images"] == 2 * FACES_PER_CLASS
    assert results["photos"]["no_face"] == 0  # every pasted face is found
    assert results["photos"]["accuracy"] >= (2 * FACES_PER_CLASS - 1) / (2 * FACES_PER_CLASS) - 1e-4  # rounded to 4
    assert results["faceless"]["images"] == 4
    assert results["faceless"]["given_a_label"] == [str(with_a_face / "someone.jpg")]
    assert results["faceless"]["no_face_share"] == pytest.approx(3 / 4)
    assert results["faceless"]["unreadable"] == [str(faceless / "junk.jpg")]
    assert results["photos"]["unreadable"] == 0
    # Measured as the job's default mode serves the shipped (single-pass) network: with the mirror pass.
    assert results["model_version"].endswith(MIRROR_VERSION_SUFFIX) and results["mirror_average"] is True
    printed = capsys.readouterr().out
    assert printed.startswith("model: ") and "\nphotos: " in printed and "\nfaceless: " in printed


def test_user_mistakes_are_one_error_line(tmp_path, capsys):
    assert photos.main(["--model", str(tmp_path / "no-model"), "--faceless", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert photos.main(["--model", str(DEFAULT_MODEL_DIR), "--faceless", str(tmp_path / "missing")]) == 2
    assert "faceless folder not found" in capsys.readouterr().err
    assert photos.main(["--model", str(DEFAULT_MODEL_DIR), "--data-dir", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: data folder not found")
    (tmp_path / "empty").mkdir()
    assert photos.main(["--model", str(DEFAULT_MODEL_DIR), "--faceless", str(tmp_path / "empty")]) == 2
    assert "no readable images" in capsys.readouterr().err
    for label in ("happy", "sad"):
        (tmp_path / "classes" / label).mkdir(parents=True)
    assert photos.main(["--model", str(DEFAULT_MODEL_DIR), "--data-dir", str(tmp_path / "classes")]) == 2
    assert "no images" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        photos.main(["--model", str(DEFAULT_MODEL_DIR)])
    assert exit_info.value.code == 2
