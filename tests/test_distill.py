"""Distillation (`trainer/distill.py`, `trainer.task --teacher`): soft targets, the held-out-faces check, a run."""

import numpy as np
import pytest

from conftest import train_small_model
from model.contract import CLASS_NAMES
from model.saved import load_classifier
from trainer import data as datasets
from trainer import distill, task

PER_CLASS = 30
SMALL = ["--epochs", "1", "--batch-size", "16", "--block-filters", "4,8"]


def test_soft_targets_blend_served_faces_only_and_sum_to_one():
    labels = np.array([0, 1, 1, 3])  # happy, sad, sad, one other expression (4 outputs in all)
    teacher_p = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], np.float32)  # answers for the served faces only
    targets = distill.soft_targets(labels, teacher_p, 0.5, 4)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(targets[0], [0.95, 0.05, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(targets[2], [0.3, 0.7, 0, 0], rtol=1e-6)  # a teacher that disagrees moves it
    np.testing.assert_array_equal(targets[3], [0, 0, 0, 1])
    np.testing.assert_allclose(distill.soft_targets(labels[:3], teacher_p, 1.0, 2), teacher_p, rtol=1e-6)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A small model trained with a test split, and its data folder."""
    return train_small_model(tmp_path_factory.mktemp("teacher"), PER_CLASS, *SMALL, "--test-fraction", "0.2")


def test_a_student_learns_from_a_teacher_that_never_saw_its_test_faces(teacher, tmp_path):
    data_dir, teacher_dir = teacher
    student_dir = tmp_path / "student"
    assert task.main(["--data-dir", str(data_dir), "--output-dir", str(student_dir), *SMALL, "--test-fraction",
                      "0.2", "--teacher", str(teacher_dir), "--teacher-weight", "0.7"]) == 0
    config = load_classifier(student_dir).metadata.training_config
    assert config["teachers"] == [load_classifier(teacher_dir).metadata.model_version]
    assert config["teacher_weight"] == 0.7
    probabilities = load_classifier(student_dir)(np.zeros((2, 48, 48, 1), np.float32))
    assert probabilities.shape == (2, len(CLASS_NAMES))


def test_a_teacher_that_saw_the_held_out_faces_is_refused(teacher, tmp_path, capsys):
    data_dir, teacher_dir = teacher
    teachers = distill.load_teachers([str(teacher_dir)])
    examples = datasets.list_examples(data_dir)
    other_seed = datasets.split_examples(examples, 0.15, datasets.DEFAULT_SPLIT_SEED + 7, 0.2)
    with pytest.raises(ValueError, match="was trained on [1-9][0-9]* of this run's [0-9]+ test faces"):
        distill.check_teachers(teachers, data_dir.name, examples, other_seed)
    same = datasets.split_examples(examples, 0.15, datasets.DEFAULT_SPLIT_SEED, 0.2)
    distill.check_teachers(teachers, data_dir.name, examples, same)  # the teacher's own split: allowed
    # Another folder of the same name holding other faces (its recorded digest differs) is refused too.
    with pytest.raises(ValueError, match="other faces"):
        distill.check_teachers(teachers, data_dir.name, examples[1:], same)
    legacy = load_classifier(teacher_dir)
    legacy.metadata.trained_on.pop("data_digest")  # a model recorded before digests: judged by its folder's name
    with pytest.raises(ValueError, match="other faces"):
        distill.check_teachers([legacy], "another-folder", examples, same)
    distill.check_teachers([legacy], data_dir.name, examples, same)
    # A teacher that takes face crops whole cannot teach a student trained on aligned crops (other inputs).
    with pytest.raises(ValueError, match="takes face crops whole, this run aligned: give --align-crops"):
        distill.check_teachers(teachers, data_dir.name, examples, same, aligned_crops=True)
    # Through the command line: one error line, exit status 2, nothing exported.
    argv = ["--data-dir", str(data_dir), "--output-dir", str(tmp_path / "student"), *SMALL, "--test-fraction",
            "0.2", "--split-seed", str(datasets.DEFAULT_SPLIT_SEED + 7), "--teacher", str(teacher_dir)]
    assert task.main(argv) == 2
    assert "test faces" in capsys.readouterr().err
    assert not (tmp_path / "student").exists()


@pytest.mark.parametrize("flags, words", [
    (["--teacher-weight", "0.3"], "give a teacher"),
    (["--teacher", "TEACHER", "--teacher-weight", "0"], "above 0"),
    (["--teacher", "TEACHER", "--mixup", "0.2"], "cannot be combined"),
])
def test_distillation_options_that_cannot_work_are_one_clear_line(teacher, tmp_path, capsys, flags, words):
    data_dir, teacher_dir = teacher
    argv = ["--data-dir", str(data_dir), "--output-dir", str(tmp_path / "m"), *SMALL,
            *[str(teacher_dir) if f == "TEACHER" else f for f in flags]]
    with pytest.raises(SystemExit) as exit_info:
        task.main(argv)
    assert exit_info.value.code == 2 and words in capsys.readouterr().err


def test_a_teacher_that_is_not_a_model_is_one_clear_line(teacher, tmp_path, capsys):
    data_dir, _ = teacher
    assert task.main(["--data-dir", str(data_dir), "--output-dir", str(tmp_path / "m"), *SMALL,
                      "--teacher", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_folder_name_is_recorded_the_same_from_inside_the_folder(tmp_path, monkeypatch):
    folder = tmp_path / "faces"
    folder.mkdir()
    assert datasets.folder_name(str(folder) + "/") == "faces"
    monkeypatch.chdir(folder)
    assert datasets.folder_name(".") == "faces"
    assert datasets.folder_name("gs://bucket/data/faces/") == "faces"
