"""Classification metrics in NumPy (no scikit-learn needed at run time)."""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

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


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    fpr, tpr = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray) -> Dict[str, object]:
    """Accuracy, precision, recall, F1, ROC-AUC, log loss, confusion matrix [[tn, fp], [fn, tp]]."""
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = (probabilities >= 0.5).astype(np.int64)
    tp = int(np.sum((predicted == 1) & (labels == 1)))
    tn = int(np.sum((predicted == 0) & (labels == 0)))
    fp = int(np.sum((predicted == 1) & (labels == 0)))
    fn = int(np.sum((predicted == 0) & (labels == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    both_classes = 0 < labels.sum() < len(labels)
    return {
        "accuracy": float(np.mean(predicted == labels)), "precision": precision, "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "roc_auc": roc_auc(labels, probabilities) if both_classes else None, "loss": float(loss),
        "confusion_matrix": [[tn, fp], [fn, tp]], "n_examples": int(len(labels)),
    }


def length_buckets(lengths: np.ndarray, max_length: int) -> List[str]:
    """short: up to half of ``max_length`` tokens; medium: up to ``max_length``; long: truncated."""
    return ["short" if n <= max_length // 2 else "medium" if n <= max_length else "long" for n in lengths]


def accuracy_by_bucket(labels: np.ndarray, probabilities: np.ndarray, buckets: List[str]) -> Dict[str, Dict]:
    result = {}
    predicted = (np.asarray(probabilities) >= 0.5).astype(np.int64)
    names = np.asarray(buckets)
    for bucket in LENGTH_BUCKETS:
        mask = names == bucket
        count = int(mask.sum())
        result[bucket] = {"n_examples": count,
                          "accuracy": float(np.mean(predicted[mask] == np.asarray(labels)[mask])) if count else None}
    return result
