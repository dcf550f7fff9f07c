"""Classification metrics, calibration and the choice of decision threshold, in plain numpy.

Kept free of scikit-learn: these few formulas are short, and the trainer then needs nothing beyond TensorFlow.
"""

import numpy as np

# Bins of the expected calibration error (equal-width over confidence 0..1).
ECE_BINS: int = 15
# Temperatures searched when calibrating (log-spaced); 1.0 means "as trained".
TEMPERATURE_GRID: np.ndarray = np.exp(np.linspace(np.log(0.05), np.log(20.0), 241))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis of logits (any shape [..., classes]), computed stably."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def roc_auc(labels_positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum (Mann-Whitney U) statistic, ties counted half."""
    labels_positive = np.asarray(labels_positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = labels_positive.sum(), (~labels_positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # Average ranks over ties.
    start = 0
    for end in range(1, len(scores) + 1):
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return float((ranks[labels_positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(labels_positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct score threshold (for plotting)."""
    labels_positive = np.asarray(labels_positive, dtype=bool)
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    tp = np.concatenate([[0], np.cumsum(labels_positive[order])])
    fp = np.concatenate([[0], np.cumsum(~labels_positive[order])])
    return fp / max(fp[-1], 1), tp / max(tp[-1], 1)


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


def reliability_bins(labels: np.ndarray, probabilities: np.ndarray,
                     bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-label reliability per equal-width confidence bin, binned exactly as `expected_calibration_error`.

    Returns (edges [bins + 1], mean confidence [bins], accuracy [bins], count [bins]); empty bins hold NaN.
    """
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(which, weights=correct.astype(np.float64), minlength=bins) / count
    return edges, mean_confidence, accuracy, count


def fit_temperature(labels: np.ndarray, logits: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood of the labels (grid search; one parameter)."""
    rows = np.arange(len(labels))

    def nll(temperature: float) -> float:
        return float(-np.log(softmax(logits / temperature)[rows, labels] + 1e-12).mean())

    return float(min(TEMPERATURE_GRID, key=nll))


def best_threshold(labels_positive: np.ndarray, scores: np.ndarray) -> float:
    """Score threshold (score >= t means positive) with the highest accuracy; ties go to the one nearest 0.5.

    Candidates lie midway between neighbouring distinct scores, so the float32 served model cannot flip an image
    that sits exactly on the threshold; 0.5 is a candidate too (it may equal a score).
    """
    distinct = np.unique(scores)
    candidates = np.concatenate([[0.5], (distinct[:-1] + distinct[1:]) / 2.0])
    labels_positive = np.asarray(labels_positive, dtype=bool)
    accuracy = np.array([((scores >= t) == labels_positive).mean() for t in candidates])
    best = np.flatnonzero(accuracy == accuracy.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def calibrated_report(labels: np.ndarray, logits: np.ndarray,
                      class_names: tuple[str, ...]) -> tuple[float, float, dict]:
    """What the trainer records for validation logits: the fitted temperature, the first class's threshold chosen
    on the calibrated scores, and the report at that threshold (plus ECE before calibration and accuracy at 0.5)."""
    temperature = fit_temperature(labels, logits)
    probabilities = softmax(logits / temperature)
    threshold = best_threshold(labels == 0, probabilities[:, 0])
    predicted = np.where(probabilities[:, 0] >= threshold, 0, 1)
    report = classification_report(labels, predicted, probabilities, class_names)
    report["ece_before_calibration"] = expected_calibration_error(labels, softmax(logits))
    report["accuracy_at_0.5"] = float((np.argmax(probabilities, axis=1) == labels).mean())
    return temperature, threshold, report


def classification_report(labels: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray,
                          class_names: tuple[str, ...]) -> dict:
    """Accuracy, per-class precision/recall, ROC AUC (first class as positive), confusion matrix and ECE."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    n_classes = len(class_names)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    for i, name in enumerate(class_names):
        true_positive = confusion[i, i]
        per_class[name] = {
            "precision": float(true_positive / confusion[:, i].sum()) if confusion[:, i].sum() else 0.0,
            "recall": float(true_positive / confusion[i].sum()) if confusion[i].sum() else 0.0,
            "support": int(confusion[i].sum()),
        }
    return {
        "images": int(len(labels)),
        "accuracy": float((labels == predicted).mean()) if len(labels) else float("nan"),
        "roc_auc": roc_auc(labels == 0, probabilities[:, 0]),
        "ece": expected_calibration_error(labels, probabilities),
        "per_class": per_class,
        "confusion_matrix": {"rows_true_cols_predicted": list(class_names), "counts": confusion.tolist()},
    }


# Percentile bootstrap of a report's figures (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13):
# how much the figures of one evaluated set would move on another set of faces drawn the same way.
BOOTSTRAP_RESAMPLES: int = 1000
BOOTSTRAP_LEVEL: float = 0.95
BOOTSTRAP_SEED: int = 0
# Fewer resamples than this give no usable 95% interval; a class with fewer images than this gives intervals that
# collapse (every resample of an all-correct class is all correct), so they are flagged when printed.
BOOTSTRAP_MIN_RESAMPLES: int = 100
BOOTSTRAP_MIN_SUPPORT: int = 30


def bootstrap_intervals(labels: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray,
                        class_names: tuple[str, ...], resamples: int = BOOTSTRAP_RESAMPLES,
                        level: float = BOOTSTRAP_LEVEL, seed: int = BOOTSTRAP_SEED) -> dict:
    """Percentile intervals of accuracy, ROC AUC (first class positive) and each class's recall.

    labels, predicted: class indexes [n]; probabilities: [n, classes]. The images are resampled with replacement
    `resamples` times (seeded, so the intervals are reproducible). Returns {"level", "resamples", "accuracy":
    [low, high], "roc_auc": [low, high], "recall": {class: [low, high]}}; a figure that is undefined in a resample
    (a class absent) is left out of that figure's interval. Raises ValueError for an empty set or resamples < 1.
    """
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    if not len(labels) or resamples < 1:
        raise ValueError("bootstrap needs at least one image and one resample")
    rng = np.random.default_rng(seed)
    figures: dict[str, list[float]] = {"accuracy": [], "roc_auc": [], **{name: [] for name in class_names}}
    correct = labels == predicted
    for _ in range(resamples):
        chosen = rng.integers(0, len(labels), len(labels))
        figures["accuracy"].append(float(correct[chosen].mean()))
        figures["roc_auc"].append(roc_auc(labels[chosen] == 0, probabilities[chosen, 0]))
        for i, name in enumerate(class_names):
            of_class = labels[chosen] == i
            figures[name].append(float(correct[chosen][of_class].mean()) if of_class.any() else float("nan"))
    tail = (1.0 - level) / 2.0 * 100.0

    def interval(values: list[float]) -> list[float]:
        kept = np.asarray(values)[~np.isnan(values)]
        return [float(np.percentile(kept, tail)), float(np.percentile(kept, 100.0 - tail))] if len(kept) else []

    return {"level": level, "resamples": resamples, "accuracy": interval(figures["accuracy"]),
            "roc_auc": interval(figures["roc_auc"]), "recall": {name: interval(figures[name]) for name in class_names}}
