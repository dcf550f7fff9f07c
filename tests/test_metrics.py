"""Metric formulas checked against brute-force definitions."""

import numpy as np

from trainer import metrics


def brute_force_auc(positive, scores):
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def test_roc_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    positive = rng.random(300) < 0.4
    scores = np.round(rng.random(300) + positive * 0.3, 1)  # rounding makes many ties
    assert abs(metrics.roc_auc(positive, scores) - brute_force_auc(positive, scores)) < 1e-12


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    labels = np.array([0, 0, 0, 1])  # 75% of rows are class 0
    calibrated = np.tile([0.75, 0.25], (4, 1))
    assert metrics.expected_calibration_error(labels, calibrated) < 1e-9
    overconfident = np.tile([0.99, 0.01], (4, 1))
    assert abs(metrics.expected_calibration_error(labels, overconfident) - 0.24) < 1e-9


def test_temperature_fit_softens_overconfident_logits():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 2000)
    # Logits pointing at the right class only 70% of the time, but with huge magnitude.
    right = rng.random(2000) < 0.7
    sign = np.where(right, 1.0, -1.0) * np.where(labels == 0, 1.0, -1.0)
    logits = np.stack([5 * sign, -5 * sign], axis=1)
    temperature = metrics.fit_temperature(labels, logits)
    assert temperature > 2.0
    before = metrics.expected_calibration_error(labels, metrics.softmax(logits))
    after = metrics.expected_calibration_error(labels, metrics.softmax(logits / temperature))
    assert after < before / 3


def test_best_threshold_separates_separable_scores():
    scores = np.array([0.1, 0.2, 0.35, 0.4, 0.9])
    positive = np.array([False, False, True, True, True])
    threshold = metrics.best_threshold(positive, scores)
    assert 0.2 < threshold <= 0.35
    assert ((scores >= threshold) == positive).all()


def test_classification_report_counts():
    labels = np.array([0, 0, 1, 1, 1])
    predicted = np.array([0, 1, 1, 1, 0])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    report = metrics.classification_report(labels, predicted, probabilities, ("happy", "sad"))
    assert report["accuracy"] == 0.6
    assert report["confusion_matrix"]["counts"] == [[1, 1], [1, 2]]
    assert report["per_class"]["sad"] == {"precision": 2 / 3, "recall": 2 / 3, "support": 3}


def noisy_predictions(n: int, error_rate: float, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    wrong = rng.random(n) < error_rate
    predicted = np.where(wrong, 1 - labels, labels)
    p_first = np.clip(np.where(predicted == 0, 0.8, 0.2) + rng.normal(0, 0.1, n), 0, 1)
    return labels, predicted, np.stack([p_first, 1 - p_first], axis=1)


def test_bootstrap_intervals_hold_the_figures_and_narrow_with_more_images():
    names = ("happy", "sad")
    labels, predicted, probabilities = noisy_predictions(200, 0.1, seed=1)
    small = metrics.bootstrap_intervals(labels, predicted, probabilities, names, resamples=300)
    report = metrics.classification_report(labels, predicted, probabilities, names)
    assert small["accuracy"][0] < report["accuracy"] < small["accuracy"][1]
    assert small["roc_auc"][0] < report["roc_auc"] < small["roc_auc"][1]
    for name in names:
        assert small["recall"][name][0] < report["per_class"][name]["recall"] < small["recall"][name][1]
    assert small == metrics.bootstrap_intervals(labels, predicted, probabilities, names, resamples=300)  # seeded
    large = metrics.bootstrap_intervals(*noisy_predictions(5000, 0.1, seed=2), names, resamples=300)
    width = lambda bounds: bounds[1] - bounds[0]  # noqa: E731
    assert width(large["accuracy"]) < width(small["accuracy"]) / 3  # about 1/sqrt(25) as wide
    perfect = metrics.bootstrap_intervals(labels, labels, probabilities, names, resamples=50)
    assert perfect["accuracy"] == [1.0, 1.0]


def test_bootstrap_needs_images_and_resamples():
    import pytest

    labels, predicted, probabilities = noisy_predictions(10, 0.1, seed=3)
    with pytest.raises(ValueError):
        metrics.bootstrap_intervals(labels[:0], predicted[:0], probabilities[:0], ("happy", "sad"))
    with pytest.raises(ValueError):
        metrics.bootstrap_intervals(labels, predicted, probabilities, ("happy", "sad"), resamples=0)
