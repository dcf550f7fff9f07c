"""Export and reload of a tiny real model, and the loader's refusal of folders that are not facelabel models."""

import shutil

import keras
import numpy as np
import pytest

from conftest import synthetic_face
from model.metadata import METADATA_FILENAME, ModelMetadata
from model.network import build_network
from model.saved import ModelLoadError, load_classifier
from trainer.export import ServingModule, export_model


def faces(count: int) -> np.ndarray:
    return np.stack([np.asarray(synthetic_face(i % 2 == 0, seed=100 + i), np.float32)[..., None]
                     for i in range(count)])


def test_reloaded_model_serves_mirror_averaged_tempered_softmax(tmp_path):
    keras.utils.set_random_seed(3)
    network = build_network(2, block_filters=(4,), dropout=0.0)
    temperature = 1.7
    export_model(ServingModule(network, temperature=temperature), ModelMetadata(model_version="x"), tmp_path)
    classifier = load_classifier(tmp_path)
    images = faces(6)
    logits = (network.predict(images, verbose=0) + network.predict(images[:, :, ::-1], verbose=0)) / 2
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(logits / temperature))
    got = classifier(images)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert classifier.metadata.model_version == "x"


def test_tiny_model_learned_its_task(tiny_model_dir):
    classifier = load_classifier(tiny_model_dir)
    images = faces(20)
    predicted = classifier.metadata.decide(classifier(images))
    assert predicted.tolist() == [0 if i % 2 == 0 else 1 for i in range(20)]


def test_missing_folder_and_non_models_are_refused(tmp_path, tiny_model_dir):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        load_classifier(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="not a SavedModel"):
        load_classifier(tmp_path)
    no_metadata = tmp_path / "no_metadata"
    shutil.copytree(tiny_model_dir, no_metadata)
    (no_metadata / METADATA_FILENAME).unlink()
    with pytest.raises(ModelLoadError, match="not a facelabel model"):
        load_classifier(no_metadata)


def test_wrong_input_shape_is_refused(tmp_path):
    import tensorflow as tf

    class WrongShape(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="images")])
        def serve(self, images):
            return {"probabilities": tf.zeros([tf.shape(images)[0], 2])}

    module = WrongShape()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    ModelMetadata(model_version="wrong").write(tmp_path)
    with pytest.raises(ModelLoadError, match="takes input"):
        load_classifier(tmp_path)


def test_the_cheap_check_refuses_what_loading_refuses_without_loading(tmp_path, tiny_model_dir, monkeypatch):
    import tensorflow as tf

    from model.saved import check_classifier

    class WrongShape(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="images")])
        def serve(self, images):
            return {"probabilities": tf.zeros([tf.shape(images)[0], 2])}

    module = WrongShape()
    tf.saved_model.save(module, str(tmp_path / "wrong"), signatures={"serving_default": module.serve})
    ModelMetadata(model_version="wrong").write(tmp_path / "wrong")
    monkeypatch.setattr(tf.saved_model, "load", lambda *a, **k: pytest.fail("check_classifier loaded the model"))
    with pytest.raises(ModelLoadError, match=r"takes input \(-1, 32, 32, 3\)"):
        check_classifier(tmp_path / "wrong")
    with pytest.raises(ModelLoadError, match="not a SavedModel"):
        check_classifier(tmp_path)
    assert check_classifier(tiny_model_dir).model_version == "tiny-test-model"
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "saved_model.pb").write_bytes(b"\xff\xff\xff not a protobuf")
    with pytest.raises(ModelLoadError, match="cannot load SavedModel"):
        check_classifier(broken)
