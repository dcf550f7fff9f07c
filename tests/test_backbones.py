"""Transfer-learning backbones: built with random weights (nothing is downloaded), run, exported and trained."""

import json

import keras
import numpy as np
import pytest
from keras.src.utils import file_utils

from conftest import train_small_model
from model.contract import INPUT_SHAPE
from model.metadata import ModelMetadata
from model.network import BACKBONE_BN_MOMENTUM, BACKBONES, build_network
from model.saved import load_classifier
from trainer import task
from trainer.export import ServingModule, export_model

FACES = np.random.default_rng(0).uniform(0, 255, (2, *INPUT_SHAPE)).astype(np.float32)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_backbone_builds_and_runs_on_48x48_grey_faces(backbone):
    network = build_network(2, backbone=backbone, weights=None)
    assert tuple(network.input_shape) == (None, *INPUT_SHAPE)
    logits = np.asarray(network(FACES, training=False))
    assert logits.shape == (2, 2) and np.isfinite(logits).all()
    assert network.get_layer("resize").output.shape[1] == BACKBONES[backbone].input_size
    # Batch norm must track the data within a short run (MobileNetV3 ships 0.999, which left it predicting
    # one class at inference after 10 epochs from random weights).
    norms = [inner for layer in network.layers for inner in getattr(layer, "layers", [layer])
             if isinstance(inner, keras.layers.BatchNormalization)]
    assert all(norm.momentum <= BACKBONE_BN_MOMENTUM for norm in norms)


def test_mobilenet_exports_with_the_unchanged_serving_signature(tmp_path):
    module = ServingModule(build_network(2, backbone="mobilenetv3small", weights=None))
    export_model(module, ModelMetadata(model_version="backbone-test"), tmp_path / "model")
    classifier = load_classifier(tmp_path / "model")
    probabilities = classifier(FACES)
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    expected = np.asarray(module.serve(FACES)["probabilities"])
    assert np.allclose(probabilities, expected, atol=1e-5)


def test_backbone_weights_from_a_local_file(tmp_path):
    source = build_network(2, backbone="mobilenetv3small", weights=None)
    backbone = source.get_layer("MobileNetV3Small")
    weights_file = tmp_path / "mobilenet_notop.weights.h5"
    backbone.save_weights(weights_file)
    loaded = build_network(2, backbone="mobilenetv3small", weights=str(weights_file)).get_layer("MobileNetV3Small")
    assert all(np.array_equal(a, b) for a, b in zip(backbone.get_weights(), loaded.get_weights()))


def test_failed_imagenet_download_is_one_error_line(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid/weights.h5: None -- [Errno -2] no network")

    monkeypatch.setattr(file_utils, "get_file", offline)  # what keras.applications call to download weights
    status = task.main(["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out"),
                        "--backbone", "resnet50", "--backbone-weights", "imagenet"])
    assert status == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: cannot load imagenet weights for backbone resnet50")
    assert "example.invalid" in err[0]  # the patched download ran: nothing was fetched
    assert task.main(["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out"),
                      "--backbone", "vgg16", "--backbone-weights", str(tmp_path / "missing.h5")]) == 2
    assert capsys.readouterr().err.startswith("error: backbone weights file not found")


def test_trainer_records_the_backbone(tmp_path):
    """VGG16: the backbone whose training step compiles fastest (MobileNetV3 takes half a minute)."""
    _, output_dir = train_small_model(tmp_path, 10, "--epochs", "1", "--batch-size", "8", "--validation-fraction",
                                      "0.2", "--backbone", "vgg16", "--backbone-input-size", "32")
    meta = json.loads((output_dir / "facelabel.json").read_text())
    assert meta["model_version"].startswith("facelabel-vgg16-")
    config = meta["training_config"]
    assert (config["backbone"], config["backbone_weights"], config["backbone_input_size"]) == \
        ("vgg16", None, 32)
    assert load_classifier(output_dir)(FACES).shape == (2, 2)
