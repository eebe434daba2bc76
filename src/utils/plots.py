"""PNG plots of training curves and evaluation results (matplotlib, no display needed)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple, Union

from src.utils.io import atomic_write

PathLike = Union[str, Path]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, works without a display
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: PathLike) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getvalue())
    return Path(path)


def plot_training_curves(history: Dict[str, Any], path: PathLike) -> Path:
    """Loss and accuracy per epoch (train vs validation), the best epoch marked, LR on a second axis."""
    plt = _pyplot()
    epochs = list(range(1, len(history["train_losses"]) + 1))
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
    loss_axis.plot(epochs, history["train_losses"], "o-", label="train loss")
    loss_axis.plot(epochs, history["val_losses"], "o-", label="validation loss")
    accuracy_axis.plot(epochs, history["train_accuracies"], "o-", label="train accuracy")
    accuracy_axis.plot(epochs, history["val_accuracies"], "o-", label="validation accuracy")
    lr_axis = loss_axis.twinx()
    lr_axis.plot(epochs, history["learning_rates"], "--", color="grey", label="learning rate")
    lr_axis.set_ylabel("learning rate")
    for axis in (loss_axis, accuracy_axis):
        if history.get("best_epoch"):
            axis.axvline(history["best_epoch"], color="green", linestyle=":", label=f"best epoch ({history['best_epoch']})")
        axis.set_xlabel("epoch")
        axis.legend(loc="best", fontsize=8)
    loss_axis.set_title("loss")
    accuracy_axis.set_title("accuracy")
    return _save(figure, path)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: PathLike) -> Path:
    """The C x C confusion matrix (rows: true class, columns: predicted), each cell's count written in it."""
    plt = _pyplot()
    count = len(class_names)
    size = min(4 + 0.6 * count, 14)
    figure, axis = plt.subplots(figsize=(size + 0.5, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(count), class_names, rotation=45 if count > 4 else 0, ha="right" if count > 4 else "center")
    axis.set_yticks(range(count), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if count <= 20:
        for row in range(count):
            for column in range(count):
                axis.text(column, row, str(matrix[row][column]), ha="center", va="center", fontsize=13 if count < 6 else 8)
    axis.set_title("confusion matrix")
    return _save(figure, path)


def plot_roc_curves(curves: Dict[str, Tuple[Sequence[float], Sequence[float], float]], path: PathLike) -> Path:
    """ROC curves ``{name: (false positive rates, true positive rates, area)}``, areas in the legend."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 4.5))
    for name, (fpr, tpr, area) in curves.items():
        axis.plot(fpr, tpr, label=f"{name} (AUC {area:.4f})" if len(curves) > 1 else f"ROC (AUC {area:.4f})")
    axis.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.legend(loc="lower right", fontsize=8)
    axis.set_title("ROC curve" if len(curves) == 1 else "ROC curves, each class against the rest")
    return _save(figure, path)


def plot_reliability_diagram(calibration: Dict[str, Any], path: PathLike) -> Path:
    """Accuracy against confidence per bin (a calibrated model lies on the diagonal), the ECE in the title."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    bins = calibration["bins"]
    axis.bar([b["lower"] for b in bins], [b["accuracy"] for b in bins], width=[b["upper"] - b["lower"] for b in bins],
             align="edge", color="steelblue", edgecolor="white", label="accuracy")
    axis.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="darkorange",
              label="a bin: mean confidence, accuracy")
    axis.plot([0, 1], [0, 1], ":", color="grey", label="calibrated")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("confidence (probability of the predicted class)")
    axis.set_ylabel("accuracy")
    axis.legend(loc="upper left", fontsize=8)
    axis.set_title(f"reliability (ECE {calibration['ece']:.4f})")
    return _save(figure, path)


def plot_accuracy_by_length(buckets: Dict[str, Dict[str, Any]], path: PathLike) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 4))
    names = list(buckets)
    values = [buckets[name]["accuracy"] or 0.0 for name in names]
    bars = axis.bar(names, values, color="steelblue")
    for bar, name in zip(bars, names):
        axis.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"n={buckets[name]['n_examples']}",
                  ha="center", va="bottom", fontsize=9)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("accuracy")
    axis.set_title("accuracy by review length")
    return _save(figure, path)
