"""Classification metrics in NumPy (no scikit-learn needed at run time)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from src.config import TEMPERATURE_RANGE
from src.data.labels import IMDB_CLASS_NAMES

LENGTH_BUCKETS = ("short", "medium", "long")


def logistic(log_odds: np.ndarray) -> np.ndarray:
    """P(positive) from log(P(positive) / P(negative)), without overflow for large values."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(log_odds, dtype=np.float64)))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) over all thresholds, from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(labels)[distinct]
    false_positives = (distinct + 1) - true_positives
    tpr = np.r_[0.0, true_positives / max(labels.sum(), 1)]
    fpr = np.r_[0.0, false_positives / max(len(labels) - labels.sum(), 1)]
    return fpr, tpr


def curve_area(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The area under a ROC curve (trapezoids)."""
    fpr, tpr = np.asarray(fpr), np.asarray(tpr)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return curve_area(*roc_curve(labels, scores))


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """The predicted class of each row of ``probabilities`` [N, C]: the most probable one; of two, the
    positive one from 0.5 up (as ``label`` says in predictions)."""
    probabilities = np.asarray(probabilities)
    if probabilities.shape[1] == 2:
        return (probabilities[:, 1] >= 0.5).astype(np.int64)
    return probabilities.argmax(axis=1)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray,
                           class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Accuracy, macro-F1, balanced accuracy, log loss, ROC-AUC (one-vs-rest, averaged over classes, for more
    than two), the confusion matrix (rows: true class, columns: predicted) and per-class precision, recall,
    F1 and support, for ``probabilities`` [N, C] of classes ``class_names``."""
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    count = probabilities.shape[1]
    names = list(class_names) if class_names is not None else [str(c) for c in range(count)]
    predicted = predicted_classes(probabilities)
    confusion = np.zeros((count, count), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    support, predicted_counts, hits = confusion.sum(axis=1), confusion.sum(axis=0), np.diag(confusion)
    per_class = {}
    for c, name in enumerate(names):
        precision, recall = _ratio(hits[c], predicted_counts[c]), _ratio(hits[c], support[c])
        per_class[name] = {"precision": precision, "recall": recall, "support": int(support[c]),
                           "f1": _ratio(2 * precision * recall, precision + recall)}
    seen = [c for c in range(count) if support[c] or predicted_counts[c]]  # as scikit-learn averages
    true_probability = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "macro_f1": float(np.mean([per_class[names[c]]["f1"] for c in seen])),
        "balanced_accuracy": float(np.mean([per_class[names[c]]["recall"] for c in range(count) if support[c]])),
        "roc_auc": _mean_area(roc_curves(labels, probabilities, names)), "loss": float(-np.mean(np.log(true_probability))),
        "confusion_matrix": confusion.tolist(), "per_class": per_class, "class_names": names,
        "n_examples": int(len(labels)),
    }


def _mean_area(curves: Dict[str, Tuple[np.ndarray, np.ndarray, float]]) -> Optional[float]:
    return float(np.mean([area for _, _, area in curves.values()])) if curves else None


def roc_curves(labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
               ) -> Dict[str, Tuple[np.ndarray, np.ndarray, float]]:
    """``{class: (fpr, tpr, area)}``: of two classes the positive one's curve, of more each class's against
    the rest (classes that are all or none of ``labels`` have none)."""
    columns = [1] if probabilities.shape[1] == 2 else range(probabilities.shape[1])
    curves = {class_names[c]: roc_curve((labels == c).astype(np.int64), probabilities[:, c]) for c in columns
              if 0 < np.sum(labels == c) < len(labels)}
    return {name: (fpr, tpr, curve_area(fpr, tpr)) for name, (fpr, tpr) in curves.items()}


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray,
                   class_names: Sequence[str] = IMDB_CLASS_NAMES) -> Dict[str, Any]:
    """``classification_metrics`` of P(positive) ``probabilities`` [N], plus the positive class's precision,
    recall and F1 (confusion matrix [[tn, fp], [fn, tp]])."""
    positive = np.asarray(probabilities, dtype=np.float64)
    metrics = classification_metrics(labels, np.column_stack([1 - positive, positive]), class_names)
    positive_class = metrics["per_class"][metrics["class_names"][1]]
    return {**metrics, **{key: positive_class[key] for key in ("precision", "recall", "f1")}}


def metrics_for(labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]) -> Dict[str, Any]:
    """The metrics of ``probabilities`` [N, C] of classes ``class_names``: ``binary_metrics`` for two
    classes (with the positive class's precision, recall and F1), ``classification_metrics`` for more."""
    probabilities = np.asarray(probabilities)
    if len(class_names) == 2:
        return binary_metrics(labels, probabilities[:, 1], class_names)
    return classification_metrics(labels, probabilities, class_names)


CALIBRATION_BINS = 15


def calibration(labels: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS) -> Dict[str, Any]:
    """Expected calibration error: the predictions binned by their confidence (the probability of the predicted
    class) into ``bins`` equal-width bins, and the mean |accuracy - confidence| of the bins weighted by their
    share of the predictions; ``bins`` lists each non-empty bin (for the reliability diagram)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = predicted_classes(probabilities)
    confidence = probabilities[np.arange(len(predicted)), predicted]
    right = predicted == np.asarray(labels)
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)  # [0, 1/bins) -> 0, ..., 1.0 -> bins - 1
    table, error = [], 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            mean_confidence, accuracy = float(confidence[inside].mean()), float(right[inside].mean())
            error += inside.mean() * abs(accuracy - mean_confidence)
            table.append({"lower": b / bins, "upper": (b + 1) / bins, "count": int(inside.sum()),
                          "confidence": mean_confidence, "accuracy": accuracy})
    return {"ece": float(error), "bins": table}


def log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean cross-entropy of scores: log-odds of the positive class [N] (two classes) or logits [N, C]."""
    labels, scores = np.asarray(labels, dtype=np.int64), np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        return float(np.mean(np.logaddexp(0.0, np.where(labels == 1, -scores, scores))))
    top = scores.max(axis=1)
    normaliser = top + np.log(np.exp(scores - top[:, None]).sum(axis=1))
    return float(np.mean(normaliser - scores[np.arange(len(labels)), labels]))


def fit_temperature(labels: np.ndarray, scores: np.ndarray, bounds: Tuple[float, float] = TEMPERATURE_RANGE) -> float:
    """The temperature T within ``bounds`` that minimises the log loss of ``scores / T`` (temperature scaling,
    Guo et al. 2017). The loss is convex in 1/T, so a golden-section search over log T finds it; dividing by
    T > 0 changes no label."""
    low, high = np.log(bounds[0]), np.log(bounds[1])
    ratio = (np.sqrt(5.0) - 1) / 2

    def loss(log_t: float) -> float:
        return log_loss(labels, np.asarray(scores) / np.exp(log_t))

    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(60):  # the bracket shrinks to 0.618^60 of log(400): far below a meaningful digit
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return float(np.exp((low + high) / 2))


def length_buckets(lengths: np.ndarray, max_length: int) -> List[str]:
    """short: up to half of ``max_length`` tokens; medium: up to ``max_length``; long: truncated."""
    return ["short" if n <= max_length // 2 else "medium" if n <= max_length else "long" for n in lengths]


def accuracy_by_bucket(labels: np.ndarray, predicted: np.ndarray, buckets: List[str]) -> Dict[str, Dict]:
    """Accuracy of the ``predicted`` classes in each length bucket."""
    result = {}
    predicted = np.asarray(predicted)
    names = np.asarray(buckets)
    for bucket in LENGTH_BUCKETS:
        mask = names == bucket
        count = int(mask.sum())
        result[bucket] = {"n_examples": count,
                          "accuracy": float(np.mean(predicted[mask] == np.asarray(labels)[mask])) if count else None}
    return result
