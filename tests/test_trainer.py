"""Trainer smoke run on a few dozen images, and evaluation of what it exported."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import train_small_model
from model.align import FACE_ALIGNMENT
from model.saved import load_classifier
from trainer import augment, evaluate, task, views

PER_CLASS = 30


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_small_model(tmp_path_factory.mktemp("trained"), PER_CLASS, "--epochs", "2", "--batch-size", "16",
                             "--block-filters", "4,8", "--validation-fraction", "0.2")


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
    low, high = report["intervals"]["accuracy"]  # the default bootstrap
    assert low <= report["accuracy"] <= high and report["intervals"]["resamples"] == 1000
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "95% intervals (bootstrap, 1000 resamples)" in printed


def test_evaluate_all_counts_every_image(trained, tmp_path):
    data_dir, output_dir = trained
    json_path = tmp_path / "eval.json"
    assert evaluate.main(["--model", str(output_dir), "--data-dir", str(data_dir), "--json", str(json_path)]) == 0
    assert json.loads(json_path.read_text())["images"] == 2 * PER_CLASS
    assert evaluate.main(["--model", str(output_dir), "--data-dir", str(data_dir), "--json", str(json_path),
                          "--bootstrap", "0"]) == 0
    assert "intervals" not in json.loads(json_path.read_text())
    assert evaluate.main(["--model", str(output_dir), "--data-dir", str(data_dir), "--bootstrap", "-1"]) == 2
    assert evaluate.main(["--model", str(output_dir), "--data-dir", str(data_dir), "--bootstrap", "1"]) == 2


def test_missing_data_dir_is_one_clear_line(tmp_path, capsys):
    status = task.main(["--data-dir", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "out")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data folder not found") and "Traceback" not in err


def test_an_output_that_cannot_be_written_or_a_bad_count_is_refused_before_training(tmp_path, capsys):
    from conftest import write_synthetic_dataset

    data_dir = write_synthetic_dataset(tmp_path / "data", per_class=4)
    (tmp_path / "a file").write_text("not a folder")
    status = task.main(["--data-dir", str(data_dir), "--output-dir", str(tmp_path / "a file" / "model")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: output folder is not writable") and "Traceback" not in err
    assert not list(tmp_path.glob("**/saved_model.pb"))
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert task.main(["--data-dir", str(data_dir), "--output-dir", str(tmp_path / "dangling")]) == 2
    assert capsys.readouterr().err.startswith("error: output folder is not writable")
    for flag, value, message in (("--epochs", "0", "--epochs must be at least 1"),
                                 ("--batch-size", "0", "--batch-size must be at least 1"),
                                 ("--patience", "-1", "--patience must be 0"),
                                 ("--max-images-per-class", "-1", "--max-images-per-class must be 0"),
                                 ("--ema-momentum", "1", "--ema-momentum must be 0 (off) or more, and below 1")):
        with pytest.raises(SystemExit) as stopped:
            task.main(["--data-dir", str(data_dir), "--output-dir", str(tmp_path / "out"), flag, value])
        assert stopped.value.code == 2
        assert message in capsys.readouterr().err


def test_evaluate_refuses_an_unwritable_json_before_evaluating(trained, tmp_path, capsys):
    data_dir, output_dir = trained
    (tmp_path / "a file").write_text("not a folder")
    assert evaluate.main(["--model", str(output_dir), "--data-dir", str(data_dir),
                          "--json", str(tmp_path / "a file" / "eval.json")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: output folder is not writable") and "\n" not in captured.err.strip()
    assert "accuracy" not in captured.out  # refused before the evaluation, not after
    assert evaluate.main(["--model", str(output_dir), "--data-dir", str(data_dir), "--json", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --json {tmp_path} is a folder")
    assert evaluate.main(["--model", str(output_dir), "--data-dir", str(data_dir),
                          "--figures", str(tmp_path / "a file" / "figures")]) == 2
    assert capsys.readouterr().err.startswith("error: output folder is not writable")


def test_views_rebuild_the_network_and_reproduce_the_recorded_metrics(trained, tmp_path, capsys):
    """Mirror averaging measured by trainer.views gives the numbers the trainer recorded for the export."""
    data_dir, output_dir = trained
    json_path = tmp_path / "views.json"
    assert views.main(["--model", str(output_dir), "--data-dir", str(data_dir), "--json", str(json_path)]) == 0
    result = json.loads(json_path.read_text())
    recorded = load_classifier(output_dir).metadata
    shipped = result["view_sets"]["face + mirror (shipped)"]
    assert shipped["passes_per_face"] == 2
    assert shipped["roc_auc"] == pytest.approx(recorded.validation_metrics["roc_auc"], abs=1e-6)
    assert shipped["temperature"] == pytest.approx(recorded.temperature)
    assert result["view_sets"]["single view"]["passes_per_face"] == 1
    assert "single view" in capsys.readouterr().out


def test_views_of_a_missing_model_is_one_clear_line(tmp_path, capsys):
    assert views.main(["--model", str(tmp_path / "missing"), "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: model folder not found")


def test_shifted_views_move_and_mirror_the_face():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    down = views.shifted(image, 1, 0, False)
    assert (down[0, 1:, :, 0] == image[0, :-1, :, 0]).all()  # content moved down one row
    assert (down[0, 0, :, 0] == image[0, 0, :, 0]).all()  # the edge row repeated
    mirrored = views.shifted(image, 0, 0, True)
    assert (mirrored[0, :, :, 0] == image[0, :, ::-1, 0]).all()


def test_time_budget_stops_after_the_first_epoch_when_nothing_more_fits(tmp_path):
    _, output_dir = train_small_model(tmp_path, 12, "--epochs", "5", "--batch-size", "8", "--block-filters", "4",
                                      "--validation-fraction", "0.25", "--max-minutes", "0.0001")
    config = load_classifier(output_dir).metadata.training_config
    assert config["epochs_run"] == 1 and config["max_epochs"] == 5 and config["max_minutes"] == 0.0001


def test_adjustable_schedule_matches_keras_cosine_decay_until_shortened():
    arguments = dict(initial_learning_rate=1e-4, decay_steps=100, warmup_target=1e-3, warmup_steps=10)
    keras_schedule = keras.optimizers.schedules.CosineDecay(**arguments)
    ours = task.AdjustableCosineDecay(**arguments)
    steps = [0, 5, 10, 50, 109, 200]
    assert [float(ours(s)) for s in steps] == [float(keras_schedule(s)) for s in steps]
    ours.shorten(40)
    assert float(ours(50)) == pytest.approx(0.0, abs=1e-9)  # warm-up 10 + decay 40: fully decayed at step 50
    assert float(ours(30)) == pytest.approx(float(keras.optimizers.schedules.CosineDecay(
        **{**arguments, "decay_steps": 40})(30)))


def test_mixup_blends_faces_targets_and_class_weights_alike():
    happy, sad = np.full((48, 48, 1), 255.0, np.float32), np.zeros((48, 48, 1), np.float32)
    images = tf.constant(np.stack([happy, sad] * 8))
    targets = tf.constant(np.array([[1.0, 0.0], [0.0, 1.0]] * 8, np.float32))
    weights = tf.constant(np.array([1.0, 3.0] * 8, np.float32))
    mixed_images, mixed_targets, mixed_weights = augment.mixup(0.4, seed=3)(images, targets, weights)
    share_happy = mixed_targets.numpy()[:, 0]
    assert np.allclose(mixed_targets.numpy().sum(axis=1), 1.0)
    assert np.allclose(mixed_images.numpy().mean(axis=(1, 2, 3)) / 255.0, share_happy, atol=1e-5)
    assert np.allclose(mixed_weights.numpy(), share_happy * 1.0 + (1.0 - share_happy) * 3.0, atol=1e-5)
    assert ((share_happy > 0.01) & (share_happy < 0.99)).any()  # something was actually blended


def test_training_auc_reads_soft_targets_as_the_class_they_lean_to():
    soft = np.array([[0.7, 0.3], [0.2, 0.8], [0.9, 0.1], [0.4, 0.6]], np.float32)  # mixup / distillation targets
    logits = np.array([[2, 0], [0, 2], [1, 0], [0, 1]], np.float32)
    hard_auc = augment.HardTargetAUC(from_logits=True)
    hard_auc.update_state(soft, logits)
    keras_auc = keras.metrics.AUC(from_logits=True)
    keras_auc.update_state(np.round(soft), logits)
    assert float(hard_auc.result()) == pytest.approx(float(keras_auc.result())) == pytest.approx(1.0)
    one_hot = np.eye(2, dtype=np.float32)[[0, 1, 1, 0]]  # one-hot targets: exactly Keras's AUC
    hard_auc.reset_state(), keras_auc.reset_state()
    hard_auc.update_state(one_hot, logits), keras_auc.update_state(one_hot, logits)
    assert float(hard_auc.result()) == float(keras_auc.result())


def test_views_of_a_model_without_training_config_is_one_clear_line(tiny_model_dir, tmp_path, capsys):
    assert views.main(["--model", str(tiny_model_dir), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: facelabel.json does not record the network's shape") and err.count("\n") == 1


def test_views_ensemble_of_a_model_with_itself_scores_as_the_model(trained, tmp_path):
    data_dir, output_dir = trained
    json_path = tmp_path / "views.json"
    assert views.main(["--model", str(output_dir), "--data-dir", str(data_dir), "--ensemble-with", str(output_dir),
                       "--json", str(json_path)]) == 0
    sets = json.loads(json_path.read_text())["view_sets"]
    ensemble = sets["2 networks, face + mirror each"]
    assert ensemble["passes_per_face"] == 4
    assert ensemble["roc_auc"] == pytest.approx(sets["face + mirror (shipped)"]["roc_auc"], abs=1e-6)
    assert ensemble["accuracy"] == pytest.approx(sets["face + mirror (shipped)"]["accuracy"])


def test_evaluating_a_folder_without_images_is_one_clear_line(trained, tmp_path, capsys):
    _, output_dir = trained
    for name in ("happy", "sad"):
        (tmp_path / "empty" / name).mkdir(parents=True)
    assert evaluate.main(["--model", str(output_dir), "--data-dir", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.startswith("error: no images to evaluate")


def test_a_split_of_other_faces_than_the_model_trained_on_is_refused(trained, tmp_path, capsys):
    from conftest import write_synthetic_dataset

    _, output_dir = trained
    other = write_synthetic_dataset(tmp_path / "data", per_class=PER_CLASS + 1)  # same folder name, one more face
    assert evaluate.main(["--model", str(output_dir), "--data-dir", str(other), "--split", "validation"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --split validation of") and "not the faces the model was trained on" in err
    assert "\n" not in err.strip()
    assert evaluate.main(["--model", str(output_dir), "--data-dir", str(other), "--split", "all"]) == 0


def test_a_model_trained_on_aligned_crops_is_evaluated_and_served_on_them(shared_faces, tmp_path):
    """--align-crops: the trainer learns each FER2013 crop's face found and aligned (model.align.crop_inputs),
    records it in the model's metadata, and evaluation feeds the model the same inputs, not the whole crops."""
    import shutil

    from model.align import crop_inputs
    from model.faces import FaceFinder, decode_for_faces
    from model.preprocess import preprocess_image
    from trainer import data as datasets

    data_dir = tmp_path / "faces"
    for label in ("happy", "sad"):
        (data_dir / label).mkdir(parents=True)
        for path in sorted((shared_faces / label).iterdir())[:20]:
            shutil.copy(path, data_dir / label / path.name)
    model_dir = tmp_path / "model"
    assert task.main(["--data-dir", str(data_dir), "--output-dir", str(model_dir), "--epochs", "1",
                      "--batch-size", "16", "--block-filters", "4,8", "--validation-fraction", "0.25",
                      "--align-crops"]) == 0
    meta = load_classifier(model_dir).metadata
    assert meta.aligned_crops is True and meta.training_config["align_crops"] is True
    assert meta.training_config["face_alignment"] == FACE_ALIGNMENT  # how its crops were aligned: the job checks
    predictions = evaluate.predict(str(model_dir), str(data_dir), "validation")
    examples = datasets.split_as_trained(datasets.list_examples(data_dir), meta.trained_on).validation
    crops = [decode_for_faces(e.content).image for e in examples]
    assert np.array_equal(predictions.images, crop_inputs(FaceFinder(), crops, aligned_crops=True))
    whole = np.stack([preprocess_image(e.content) for e in examples])
    assert not np.array_equal(predictions.images, whole)  # most crops' faces are found, and so re-framed


def test_averaged_weights_are_the_ones_validated_and_exported(tmp_path, caplog):
    """With --ema-momentum the exported network holds the moving average, not the last step's weights: at a
    momentum so close to 1 that the average cannot move in a few steps, it stays where the first step put it (Keras
    starts the average from the weights after that step), one step's size (the warm-up rate) from the initial
    network, while the last step's weights have moved much further."""
    from trainer import options

    flags = ["--epochs", "2", "--batch-size", "8", "--block-filters", "4", "--validation-fraction", "0.25",
             "--no-augment", "--learning-rate", "0.05"]
    _, plain_dir = train_small_model(tmp_path / "plain", 12, *flags)
    _, averaged_dir = train_small_model(tmp_path / "averaged", 12, *flags, "--ema-momentum", "0.9999999")
    args = options.parse_args(["--data-dir", "unused", "--output-dir", "unused", *flags])
    keras.utils.set_random_seed(args.seed)  # as task.train does before building the network
    initial = task.make_network(args).trainable_weights[0].numpy()
    (plain, _), (averaged, meta) = views.trained_network(str(plain_dir)), views.trained_network(str(averaged_dir))
    first_step = float(args.learning_rate) / 10  # task.train's warm-up starts at a tenth of the peak rate
    moved_averaged = np.abs(averaged.trainable_weights[0].numpy() - initial).max()
    moved_plain = np.abs(plain.trainable_weights[0].numpy() - initial).max()
    assert moved_averaged <= first_step * 1.01
    assert moved_plain > 5 * first_step
    assert meta.training_config["ema_momentum"] == 0.9999999
    assert "averages over about 10000000 steps, more than this run's 6" in caplog.text  # 18 faces, batches of 8


def test_averaged_weights_and_fine_tuning_are_refused_together(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        task.main(["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out"), "--extra-data-dir",
                   str(tmp_path), "--finetune-epochs", "2", "--ema-momentum", "0.99"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith("error: --ema-momentum averages the weights of one training")
