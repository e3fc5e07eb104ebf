"""Subject-independent evaluation protocols, and the validation split inside a training fold.

loso    leave one subject out (JAFFE): one fold per subject.
kfold   subject IDs sorted ascending and dealt into K folds (CK+): subject i -> fold i mod K.
holdout train on split "train", test on split "val" (SFEW 2.0): one fold, numbered 0.
Every protocol keeps each subject (and so each sequence) inside one fold; the validation
subjects used for early stopping are drawn from the training subjects only.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np


class ProtocolError(ValueError):
    """The data cannot support the requested protocol."""


@dataclass(frozen=True)
class FoldSplit:
    fold: int
    train: np.ndarray      # row indices into the prepared data
    val: np.ndarray
    test: np.ndarray


def fold_of_subject(subjects: list[str], protocol: str, n_folds: int | None) -> dict[str, int]:
    """Which fold's test set holds each subject (holdout: none, so the dict is empty)."""
    ordered = sorted(set(subjects))
    if protocol == "loso":
        return {s: i for i, s in enumerate(ordered)}
    if protocol == "kfold":
        k = int(n_folds or 10)
        if len(ordered) < k:
            raise ProtocolError(f"{len(ordered)} subjects cannot fill {k} subject-independent folds")
        return {s: i % k for i, s in enumerate(ordered)}
    if protocol == "holdout":
        return {}
    raise ProtocolError(f"unknown protocol {protocol!r}")


def fold_ids(subjects: list[str], protocol: str, n_folds: int | None) -> list[int]:
    if protocol == "holdout":
        return [0]
    return sorted(set(fold_of_subject(subjects, protocol, n_folds).values()))


def _stable_seed(*parts) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def make_split(subjects: list[str], splits: list[str], protocol: str, n_folds: int | None,
               fold: int, val_fraction: float, seed: int) -> FoldSplit:
    """Train / validation / test rows of one fold; validation subjects come out of training."""
    subj = np.asarray(subjects)
    if protocol == "holdout":
        split_arr = np.asarray(splits)
        test_mask = split_arr == "val"
        pool_mask = split_arr == "train"
        if not test_mask.any() or not pool_mask.any():
            raise ProtocolError("holdout needs rows with split 'train' and split 'val'")
    else:
        owner = fold_of_subject(subjects, protocol, n_folds)
        test_mask = np.array([owner[s] == fold for s in subjects])
        if not test_mask.any():
            raise ProtocolError(f"fold {fold} has no test subject")
        pool_mask = ~test_mask
    pool_subjects = sorted(set(subj[pool_mask].tolist()))
    n_val = math.ceil(val_fraction * len(pool_subjects)) if val_fraction > 0 else 0
    n_val = min(n_val, len(pool_subjects) - 1)
    rng = np.random.default_rng(_stable_seed(seed, protocol, fold))
    val_subjects = set(rng.choice(pool_subjects, size=n_val, replace=False).tolist()) if n_val else set()
    val_mask = pool_mask & np.isin(subj, list(val_subjects))
    train_mask = pool_mask & ~val_mask
    return FoldSplit(fold=fold, train=np.flatnonzero(train_mask), val=np.flatnonzero(val_mask),
                     test=np.flatnonzero(test_mask))
