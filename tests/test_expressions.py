"""Training on other expressions as auxiliary classes, the held-out test split, and lost-resolution augmentation."""

import argparse
import json

import numpy as np
import pytest

from conftest import synthetic_face, train_small_model, write_synthetic_dataset
from model.contract import CLASS_NAMES
from model.network import build_network
from model.saved import load_classifier
from trainer import augment, evaluate, expressions
from trainer import data as datasets

PER_CLASS = 30
OTHER_PER_CLASS = 12


def write_other_expressions(root, names=("angry", "neutral")):
    """root/<name>/*.png: synthetic faces filed under expressions that are not served."""
    for j, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(OTHER_PER_CLASS):
            synthetic_face(j == 0, seed=50_000 + 100 * j + i).save(root / name / f"{name}_{i:03d}.png")
    (root / "README.md").write_text("not an expression folder\n")
    return root


@pytest.fixture(scope="module")
def multitask(tmp_path_factory):
    root = tmp_path_factory.mktemp("multitask")
    other = write_other_expressions(root / "other")
    data_dir, model_dir = train_small_model(root, PER_CLASS, "--epochs", "2", "--batch-size", "16",
                                            "--block-filters", "4,8", "--extra-data-dir", str(other),
                                            "--test-fraction", "0.2", "--low-resolution", "0.5",
                                            "--no-mirror-average")
    return data_dir, model_dir


def test_test_split_is_the_validation_split_of_a_run_without_one(tmp_path):
    examples = datasets.list_examples(write_synthetic_dataset(tmp_path / "data", per_class=40))
    two_way = datasets.split_examples(examples, 0.2, seed=5)
    three_way = datasets.split_examples(examples, 0.2, seed=5, test_fraction=0.2)
    assert sorted(e.path for e in three_way.test) == sorted(e.path for e in two_way.validation)
    parts = [{e.content_hash for e in part} for part in (three_way.train, three_way.validation, three_way.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sum(map(len, parts)) == 80
    # 20% of each class's 32 remaining faces (rounded) are validation faces.
    assert three_way.counts()["validation"] == {"happy": 6, "sad": 6}
    assert "test" not in two_way.counts()


def test_auxiliary_classes_train_a_served_two_class_model(multitask, tmp_path):
    data_dir, model_dir = multitask
    classifier = load_classifier(model_dir)
    meta = classifier.metadata
    assert meta.class_names == CLASS_NAMES
    assert meta.trained_on["other_expressions"] == ["angry", "neutral"]
    assert meta.trained_on["other_faces"] == 2 * OTHER_PER_CLASS
    assert meta.trained_on["split"]["test"] == {"happy": 6, "sad": 6}
    assert meta.training_config["mirror_average"] is False and meta.training_config["low_resolution"] == 0.5
    faces = np.stack([np.asarray(synthetic_face(i % 2 == 0, seed=i), np.float32)[..., None] for i in range(6)])
    probabilities = classifier(faces)
    assert probabilities.shape == (6, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    recorded = json.loads((model_dir / "test_metrics.json").read_text())
    json_path = tmp_path / "test.json"
    assert evaluate.main(["--model", str(model_dir), "--data-dir", str(data_dir), "--split", "test",
                          "--json", str(json_path)]) == 0
    report = json.loads(json_path.read_text())
    assert report["images"] == 12
    assert report["confusion_matrix"] == recorded["confusion_matrix"]
    assert recorded["model_version"] == meta.model_version and recorded["split"] == "test"


def test_evaluating_a_test_split_that_was_never_carved_is_one_clear_line(tiny_model_dir, tmp_path, capsys):
    data_dir = write_synthetic_dataset(tmp_path / "data", per_class=5)
    assert evaluate.main(["--model", str(tiny_model_dir), "--data-dir", str(data_dir), "--split", "test"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "test split" in err and len(err.splitlines()) == 1


def test_served_network_keeps_the_served_classes_logits():
    trained = build_network(5, block_filters=(4, 8), dropout=0.0)
    served = expressions.served_network(trained, (4, 8), 0.0)
    faces = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype(np.float32)
    np.testing.assert_allclose(served(faces).numpy(), trained(faces).numpy()[:, :2], rtol=1e-5, atol=1e-5)


def test_training_weights_balance_served_classes_and_weigh_others_alike():
    labels = np.array([0, 0, 0, 1, 2, 3, 3])
    weights = expressions.training_weights(labels, other_weight=0.5)
    assert weights[:3].sum() == pytest.approx(weights[3])  # each served class carries equal total weight
    assert weights[:4].mean() == pytest.approx(1.0)
    assert list(weights[4:]) == [0.5, 0.5, 0.5]


def test_other_expressions_named_like_served_classes_are_refused(tmp_path):
    write_other_expressions(tmp_path / "other", names=("angry", "happy"))
    with pytest.raises(ValueError, match="happy"):
        expressions.other_expression_names(str(tmp_path / "other"))
    write_other_expressions(tmp_path / "cased", names=("angry", "Sad"))
    with pytest.raises(ValueError, match="Sad"):  # a served class in another letter case is the same class
        expressions.other_expression_names(str(tmp_path / "cased"))
    with pytest.raises(FileNotFoundError):
        expressions.other_expression_names(str(tmp_path / "missing"))


def test_low_resolution_blurs_chosen_faces_and_is_identity_at_inference():
    rng = np.random.default_rng(1)
    faces = rng.uniform(0, 255, (4, 48, 48, 1)).astype(np.float32)  # noise: all high frequencies
    layer = augment.RandomLowResolution(1.0, seed=3)
    blurred = np.asarray(layer(faces, training=True))
    assert blurred.shape == faces.shape
    def roughness(x):
        return np.abs(np.diff(x, axis=2)).mean()
    assert roughness(blurred) < 0.6 * roughness(faces)
    np.testing.assert_array_equal(np.asarray(layer(faces, training=False)), faces)
    assert np.array_equal(np.asarray(augment.RandomLowResolution(0.0, seed=3)(faces, training=True)), faces)
    again = np.asarray(augment.RandomLowResolution(1.0, seed=3)(faces, training=True))
    np.testing.assert_allclose(again, blurred)  # seeded: same faces, same result


def test_evaluating_a_capped_run_scores_the_faces_it_was_tested_on(tmp_path):
    data_dir, model_dir = train_small_model(tmp_path, PER_CLASS, "--epochs", "1", "--batch-size", "16",
                                            "--block-filters", "4,8", "--test-fraction", "0.2",
                                            "--max-images-per-class", "20")
    assert load_classifier(model_dir).metadata.trained_on["max_images_per_class"] == 20
    json_path = tmp_path / "test.json"
    assert evaluate.main(["--model", str(model_dir), "--data-dir", str(data_dir), "--split", "test",
                          "--json", str(json_path)]) == 0
    recorded = json.loads((model_dir / "test_metrics.json").read_text())
    report = json.loads(json_path.read_text())
    assert report["images"] == recorded["images"] == 8  # 20% of 20 per class
    assert report["confusion_matrix"] == recorded["confusion_matrix"]


@pytest.mark.parametrize("flags, words", [
    (["--test-fraction", "0.01"], "without test images"),
    (["--low-resolution", "0.5", "--no-augment"], "--no-augment"),
    (["--other-weight", "2"], "--extra-data-dir"),
    (["--finetune-epochs", "2"], "--extra-data-dir"),
    (["--finetune-epochs", "-1", "--extra-data-dir", "other"], "--finetune-epochs must be 0 (off) or more"),
    (["--finetune-epochs", "2", "--extra-data-dir", "other", "--max-minutes", "5"], "budgets the pre-training"),
])
def test_training_options_that_cannot_work_are_one_clear_line(tmp_path, capsys, flags, words):
    from trainer import task

    data_dir = write_synthetic_dataset(tmp_path / "data", per_class=20)
    argv = ["--data-dir", str(data_dir), "--output-dir", str(tmp_path / "model"), "--epochs", "1",
            "--block-filters", "4,8", *flags]
    try:
        status = task.main(argv)
    except SystemExit as exit_:  # argparse's usage error
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert "error:" in err and words in err and "Traceback" not in err
    assert not (tmp_path / "model").exists()


def test_an_expression_folder_without_images_is_refused(tmp_path):
    other = write_other_expressions(tmp_path / "other")
    (other / "fear").mkdir()
    names = expressions.other_expression_names(str(other))
    assert names == ("angry", "fear", "neutral")
    with pytest.raises(ValueError, match="fear"):
        expressions.list_other_examples(str(other), names)


def finetune_args(epochs: int, learning_rate: float) -> argparse.Namespace:
    return argparse.Namespace(seed=1, batch_size=16, no_augment=False, low_resolution=0.0, label_smoothing=0.05,
                              learning_rate=learning_rate, finetune_epochs=epochs, mixup=0.0)


def scripted_pair_auc(monkeypatch, values: list[float]) -> None:
    """PairAUC reports these values, one per call, instead of measuring: the epochs' validation AUC, scripted."""
    left = iter(values)

    def on_epoch_end(self, epoch, logs=None):
        logs[expressions.PAIR_AUC] = next(left)

    monkeypatch.setattr(expressions.PairAUC, "on_epoch_end", on_epoch_end)


def bright_and_dark_faces(count: int, first_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Faces [count, 48, 48, 1] alternating bright (happy, 0) and dark (sad, 1), and their labels [count]."""
    labels = np.arange(count) % 2
    faces = np.stack([np.asarray(synthetic_face(label == 0, seed=first_seed + i), np.float32)[..., None]
                      for i, label in enumerate(labels)])
    return faces, labels


def test_fine_tuning_learns_the_pair_and_keeps_its_best_epoch():
    faces, labels = bright_and_dark_faces(64, 0)
    val_faces, val_labels = bright_and_dark_faces(20, 1_000)
    network = build_network(2, block_filters=(4, 8), dropout=0.0)
    kernel, bias = network.get_layer(expressions.LOGITS_LAYER).get_weights()
    network.get_layer(expressions.LOGITS_LAYER).set_weights([np.zeros_like(kernel), np.zeros_like(bias)])
    result = expressions.fine_tune(finetune_args(3, 0.05), network, faces, labels, val_faces, val_labels, 1e-4)
    assert result.pair_auc_before == pytest.approx(0.5)  # equal logits for every face: no ranking at all
    assert result.epochs_run == 3 and 1 <= result.best_epoch <= 3
    assert result.pair_auc_after > 0.9
    served = expressions.metrics.softmax(network.predict(val_faces, verbose=0))[:, 0]
    assert expressions.metrics.roc_auc(val_labels == 0, served) == pytest.approx(result.pair_auc_after)


def test_fine_tuning_that_never_beats_the_pretrained_network_keeps_it(monkeypatch):
    faces, labels = bright_and_dark_faces(32, 0)
    val_faces, val_labels = bright_and_dark_faces(20, 1_000)
    network = build_network(2, block_filters=(4, 8), dropout=0.0)
    before = [w.copy() for w in network.get_weights()]
    scripted_pair_auc(monkeypatch, [0.9, 0.8, 0.85])  # pre-trained, then two epochs that do worse
    result = expressions.fine_tune(finetune_args(2, 0.05), network, faces, labels, val_faces, val_labels, 1e-4)
    assert (result.best_epoch, result.pair_auc_before, result.pair_auc_after) == (0, 0.9, 0.9)
    for kept, original in zip(network.get_weights(), before):  # the epochs did change them: undone
        np.testing.assert_array_equal(kept, original)


def test_a_fine_tuned_run_records_what_fine_tuning_did_and_is_refitted_alike(tmp_path, monkeypatch, capsys):
    from trainer import task

    # Validation AUC: 0.6 after pre-training's one epoch, then 0.7 and 0.65 after fine-tuning's two (measured once
    # more before fine-tuning: 0.6): fine-tuning's first epoch is kept.
    scripted_pair_auc(monkeypatch, [0.6, 0.6, 0.7, 0.65])
    other = write_other_expressions(tmp_path / "other")
    recipe = ["--batch-size", "16", "--block-filters", "4,8", "--extra-data-dir", str(other), "--finetune-epochs", "2",
              "--no-mirror-average"]
    data_dir, model_dir = train_small_model(tmp_path, PER_CLASS, "--epochs", "1", "--test-fraction", "0.2", *recipe)
    config = load_classifier(model_dir).metadata.training_config
    assert config["finetune_epochs"] == 2 and config["finetune_epochs_run"] == 2
    assert config["finetune_best_epoch"] == 1
    assert (config["finetune_pair_auc_before"], config["finetune_pair_auc_after"]) == (0.6, 0.7)
    monkeypatch.undo()
    # The refit pre-trains and fine-tunes to the validation run's best epochs, on the same schedules.
    refit_dir = tmp_path / "refit"
    assert task.main(["--data-dir", str(data_dir), "--output-dir", str(refit_dir), *recipe,
                      "--refit-of", str(model_dir)]) == 0
    refitted = load_classifier(refit_dir).metadata.training_config
    assert refitted["finetune_epochs"] == 2 and refitted["finetune_epochs_run"] == refitted["finetune_best_epoch"] == 1
    assert "finetune_pair_auc_after" not in refitted  # no validation faces left to score
    # Without --finetune-epochs the recipe differs from the run's: refused, one line.
    without = [flag for flag in recipe if flag not in ("--finetune-epochs", "2")]
    capsys.readouterr()
    assert task.main(["--data-dir", str(data_dir), "--output-dir", str(tmp_path / "again"), *without,
                      "--refit-of", str(model_dir)]) == 2
    assert "--finetune-epochs 0 (it had 2)" in capsys.readouterr().err
