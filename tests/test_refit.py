"""Refit (`trainer/refit.py`, `trainer.task --refit-of`): train + validation faces, the earlier run's choices kept."""

import json

import pytest

from conftest import train_small_model
from model.saved import load_classifier
from trainer import data as datasets
from trainer import evaluate, machine, task

PER_CLASS = 30
SMALL = ["--batch-size", "16", "--block-filters", "4,8"]


@pytest.fixture(scope="module")
def validation_run(tmp_path_factory):
    """A small model trained with a test split and a validation split, and its data folder."""
    return train_small_model(tmp_path_factory.mktemp("validation-run"), PER_CLASS, *SMALL, "--epochs", "2",
                             "--test-fraction", "0.2", "--validation-fraction", "0.25")


def test_a_refit_trains_on_validation_faces_too_and_keeps_the_choices(validation_run, tmp_path, capsys):
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
    # The epochs of the weights the first run serves (early stopping restores its best), on its schedule.
    assert 1 <= first.training_config["best_epoch"] <= first.training_config["epochs_run"] == 2
    assert refitted.training_config["epochs_run"] == first.training_config["best_epoch"]
    assert refitted.training_config["schedule_epochs"] == first.training_config["schedule_epochs"] == 2
    assert refitted.model_version != first.model_version
    # Its facelabel.json alone (a copy kept without the weights) is all a refit reads: the same network again.
    kept = tmp_path / "kept" / "validation-run.json"
    kept.parent.mkdir()
    kept.write_text((first_dir / "facelabel.json").read_text())
    assert task.main(["--data-dir", str(data_dir), "--output-dir", str(tmp_path / "again"), *SMALL,
                      "--refit-of", str(kept)]) == 0
    assert load_classifier(tmp_path / "again").metadata.model_version == refitted.model_version
    # Both record this machine, and the comparison `make train` prints says so.
    assert refitted.training_config[machine.MACHINE_KEY] == machine.describe()
    assert machine.compare(tmp_path / "again", refit_dir)[0].startswith("reproduced: ")
    # Its test figures are scored on the same faces, and evaluate carves the same test split from its metadata.
    recorded = json.loads((refit_dir / task.TEST_METRICS_FILENAME).read_text())
    json_path = tmp_path / "test.json"
    assert evaluate.main(["--model", str(refit_dir), "--data-dir", str(data_dir), "--split", "test",
                          "--json", str(json_path), "--bootstrap", "0"]) == 0
    report = json.loads(json_path.read_text())
    assert report["images"] == recorded["images"] == sum(counts["test"].values())
    assert report["confusion_matrix"] == recorded["confusion_matrix"]
    # No validation faces are left to score: the refit trained on them.
    capsys.readouterr()
    assert evaluate.main(["--model", str(refit_dir), "--data-dir", str(data_dir), "--split", "validation"]) == 2
    assert "trained on that run's validation faces" in capsys.readouterr().err


def test_refit_of_what_cannot_be_refitted_is_one_clear_line(validation_run, tmp_path, capsys):
    data_dir, first_dir = validation_run
    refit_dir = tmp_path / "refit"
    assert task.main(["--data-dir", str(data_dir), "--output-dir", str(refit_dir), *SMALL,
                      "--refit-of", str(first_dir)]) == 0
    capsys.readouterr()
    cases = [
        (["--refit-of", str(refit_dir)], "is itself a refit"),  # no validation split left to keep choices from
        (["--refit-of", str(tmp_path / "missing")], "--refit-of: model folder not found"),
        (["--refit-of", str(first_dir), "--max-minutes", "5"], "drop --max-minutes"),
        (["--refit-of", str(first_dir), "--epochs", "5", "--max-images-per-class", "10"],
         "takes its epochs and split from the run it refits: drop --epochs, --max-images-per-class"),
        (["--refit-of", str(first_dir), "--block-filters", "4,16", "--low-resolution", "0.3"],
         "these differ: --block-filters 4,16 (it had 4,8); --low-resolution 0.3 (it had 0.0)"),
        (["--refit-of", str(first_dir), "--align-crops"], "these differ: drop --align-crops (its run had none)"),
        (["--refit-of", str(first_dir), "--split-seed", "2013", "--test-fraction=0"],  # given, even at defaults
         "drop --test-fraction, --split-seed"),
        (["--refit-of", str(tmp_path / "notes.json")], "notes.json is not a model's facelabel.json"),
        (["--refit-of", ""], "needs a local model folder"),
        (["--refit-of", "gs://bucket/model"], "needs a local model folder"),
    ]
    (tmp_path / "notes.json").write_text('{"not": "a model"}')
    # A run recorded before best epochs were, stopped before its last epoch: the epochs it kept are not known.
    stopped = train_small_model(tmp_path / "stopped", PER_CLASS, *SMALL, "--epochs", "3", "--max-minutes", "0.001",
                                "--test-fraction", "0.2")[1]
    metadata = json.loads((stopped / "facelabel.json").read_text())
    del metadata["training_config"]["best_epoch"]
    (stopped / "facelabel.json").write_text(json.dumps(metadata))
    cases.append((["--refit-of", str(stopped)], "stopped after 1 of 3 epochs and does not record"))
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
    assert "--data-dir does not hold the faces" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # its own folder as the output would replace it
        task.main(["--data-dir", str(data_dir), "--output-dir", str(first_dir), *SMALL, "--refit-of", str(first_dir)])
    assert "it would be replaced" in capsys.readouterr().err
    (tmp_path / "link").symlink_to(first_dir)  # also through a symbolic link
    with pytest.raises(SystemExit):
        task.main(["--data-dir", str(data_dir), "--output-dir", str(tmp_path / "link"), *SMALL,
                   "--refit-of", str(first_dir)])
    assert "it would be replaced" in capsys.readouterr().err
    assert (first_dir / "facelabel.json").is_file()


def test_other_expressions_and_teachers_must_be_the_refitted_runs(tmp_path):
    from PIL import Image

    from trainer import options, refit

    choices = refit.Choices(model_version="v1", trained_on={"other_expressions": ["angry", "neutral"],
                                                            "other_faces": 4},
                            training_config={"other_weight": 0.5, "teachers": ["t1"], "teacher_weight": 0.5},
                            epochs=2, schedule_epochs=2, best_epoch_known=True, temperature=1.0, threshold=0.5,
                            validation_metrics={})
    for name in ("angry", "fear"):  # same folder name as the run's, other expressions inside
        (tmp_path / "X" / name).mkdir(parents=True)
        Image.new("L", (48, 48)).save(tmp_path / "X" / name / "a.png")
    args = options.parse_args(["--data-dir", "d", "--output-dir", "o", "--extra-data-dir", str(tmp_path / "X"),
                               "--teacher", "t"])
    with pytest.raises(ValueError, match=r"--extra-data-dir \(its expressions\) angry,fear \(it had angry,neutral\)"):
        refit.check_recipe(choices, args)
    without = options.parse_args(["--data-dir", "d", "--output-dir", "o"])  # both dropped: named once each
    with pytest.raises(ValueError) as refused:
        refit.check_recipe(choices, without)
    assert "--extra-data-dir (its expressions) none (it had angry,neutral)" in str(refused.value)
    assert "--teacher: its teachers were t1" in str(refused.value)
    assert "weight" not in str(refused.value)  # not "--other-weight None (it had 0.5)", an option never given
    with pytest.raises(ValueError, match="give its teachers again \\(t1\\); these are t2"):
        refit.check_teachers(choices, ["t2"])
    refit.check_teachers(choices, ["t1"])
    with pytest.raises(ValueError, match="holds 3 faces of other expressions; it was trained with 4"):
        refit.check_other_faces(choices, 3)
