"""Accuracy and confusion matrices, the way the paper reports them.

The paper's number is the mean of the per-fold accuracies ("average performance across the
ten models"); the pooled accuracy over all test samples is reported beside it. Confusion
matrices have true classes as rows and predicted classes as columns, in the trained data
set's class order; the CK+/JAFFE figures are the sum of the fold matrices.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


class LabelError(ValueError):
    """A sample's true label is not one of the classes its own data set was trained on."""


def predicted_labels(probs: Sequence[np.ndarray], classes: Sequence[str]) -> np.ndarray:
    """Class names of the argmax of each probability vector (probs in `classes` order)."""
    if len(probs) == 0:
        return np.array([], dtype=object)
    matrix = np.stack([np.asarray(p) for p in probs])
    if matrix.shape[1] != len(classes):
        raise ValueError(f"probability vectors have {matrix.shape[1]} values for {len(classes)} classes")
    return np.asarray(classes, dtype=object)[matrix.argmax(axis=1)]


def split_known(frame: pd.DataFrame, classes: Sequence[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep samples whose true label is a trained class; count the others per label.

    Cross-data-set testing (e.g. SFEW models on CK+) meets classes the model never had
    (contempt): those samples cannot be right or wrong, so they are dropped and counted,
    matching classes by name. Counts are of distinct samples.
    """
    known = frame["label"].isin(list(classes))
    dropped = frame.loc[~known].drop_duplicates(["sample_id"])["label"].value_counts()
    return frame.loc[known].reset_index(drop=True), {str(k): int(v) for k, v in sorted(dropped.items())}


def accuracy(labels: Sequence[str], preds: Sequence[str]) -> float:
    """Fraction correct, NaN for no samples (an absent number must not read as 0%)."""
    labels, preds = np.asarray(labels, dtype=object), np.asarray(preds, dtype=object)
    return float((labels == preds).mean()) if len(labels) else float("nan")


def fold_accuracies(frame: pd.DataFrame) -> dict[int, float]:
    """Accuracy per fold of a frame with columns fold, label, pred."""
    return {int(fold): accuracy(g["label"], g["pred"])
            for fold, g in frame.groupby("fold", sort=True)}


def mean_over_folds(per_fold: dict[int, float]) -> float:
    """The paper's number: the unweighted mean of the fold accuracies."""
    return float(np.mean(list(per_fold.values()))) if per_fold else float("nan")


def pooled_accuracy(frame: pd.DataFrame) -> float:
    """Accuracy over every test sample of every fold together."""
    return accuracy(frame["label"], frame["pred"])


def confusion_matrix(labels: Sequence[str], preds: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class, in `classes` order."""
    position = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for true, pred in zip(labels, preds):
        if true not in position:
            raise LabelError(f"true label {true!r} is not one of the classes {list(classes)}")
        matrix[position[true], position[pred]] += 1
    return matrix


def fold_confusions(frame: pd.DataFrame, classes: Sequence[str]) -> dict[int, np.ndarray]:
    """One confusion matrix per fold."""
    return {int(fold): confusion_matrix(g["label"], g["pred"], classes)
            for fold, g in frame.groupby("fold", sort=True)}


def summed_confusion(per_fold: dict[int, np.ndarray], n_classes: int) -> np.ndarray:
    """The fold-summed matrix (the paper's Figs. 7-8)."""
    total = np.zeros((n_classes, n_classes), dtype=np.int64)
    for matrix in per_fold.values():
        total += matrix
    return total


def sd_over_folds(per_fold: dict[int, float]) -> float:
    """Sample standard deviation of the fold accuracies (ddof=1); NaN below two folds."""
    values = [v for v in per_fold.values() if not np.isnan(v)]
    return float(np.std(values, ddof=1)) if len(values) >= 2 else float("nan")


def per_class_recall(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class (row) of a confusion matrix; NaN for a class with no samples."""
    confusion = np.asarray(confusion, dtype=float)
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / totals, np.nan)


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean over the classes present (as truth or prediction) of their F1 score;
    a class never seen and never predicted is left out, NaN for an empty matrix."""
    confusion = np.asarray(confusion, dtype=float)
    true, predicted, hits = confusion.sum(axis=1), confusion.sum(axis=0), np.diag(confusion)
    present = (true + predicted) > 0
    if not present.any():
        return float("nan")
    f1 = 2 * hits[present] / (true[present] + predicted[present])
    return float(f1.mean())
