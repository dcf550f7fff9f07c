"""Model metadata: round trip through JSON and the decision rules."""

import json

import numpy as np
import pytest

from model.metadata import RULE_ARGMAX, RULE_THRESHOLD, ModelMetadata


def test_round_trip_keeps_every_field(tmp_path):
    original = ModelMetadata(model_version="v1", decision_rule=RULE_THRESHOLD, threshold=0.3, temperature=1.7,
                             trained_on={"split": {"train": {"happy": 3, "sad": 2}}},
                             validation_metrics={"accuracy": 0.9}, created_at="2026-01-01T00:00:00+00:00",
                             aligned_crops=True)
    original.write(tmp_path)
    assert ModelMetadata.read(tmp_path) == original


def test_a_model_recorded_before_aligned_crops_takes_crops_whole():
    assert ModelMetadata.from_json('{"model_version": "v0"}').aligned_crops is False


@pytest.mark.parametrize("value", ['"false"', '"yes"', "1", "0", "null"])
def test_aligned_crops_must_be_true_or_false(value):
    with pytest.raises(ValueError, match="aligned_crops must be true or false"):
        ModelMetadata.from_json('{"model_version": "v0", "aligned_crops": %s}' % value)


def test_threshold_rule_uses_positive_class_probability():
    meta = ModelMetadata(model_version="v", decision_rule=RULE_THRESHOLD, positive_class="happy", threshold=0.3)
    probabilities = np.array([[0.31, 0.69], [0.29, 0.71], [0.9, 0.1]])
    assert meta.decide(probabilities).tolist() == [0, 1, 0]


def test_argmax_rule():
    meta = ModelMetadata(model_version="v", decision_rule=RULE_ARGMAX)
    assert meta.decide(np.array([[0.31, 0.69], [0.6, 0.4]])).tolist() == [1, 0]


def test_refuses_unknown_rule_and_newer_format():
    with pytest.raises(ValueError, match="decision rule"):
        ModelMetadata(model_version="v", decision_rule="vote")
    with pytest.raises(ValueError, match="newer"):
        ModelMetadata.from_json(json.dumps({"model_version": "v", "format": 99}))
    with pytest.raises(ValueError, match="model_version"):
        ModelMetadata.from_json("{}")
