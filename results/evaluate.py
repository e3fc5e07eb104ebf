"""Score every system of a run: each ensemble and each member, on its own and on other data sets.

A "system" is one ensemble (Baseline, FTL, EL) or one member alone (an EL part, or a
Baseline/FTL member m0..m4). Tables, confusion matrices, figures and the report all read
this one evaluation, so every file shows the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from partfer.orchestrator.networks import NETWORKS
from partfer.orchestrator.records import RunPlan
from partfer.results import metrics
from partfer.results.ensemble import ensemble_predictions
from partfer.results.load import RunResults
from partfer.results.paper import PART_ORDER, column_name


OUTCOME_COLUMNS = ["fold", "sample_id", "correct"]


@dataclass
class SystemScore:
    train_dataset: str
    eval_dataset: str
    network: str
    member: str | None                  # None: the network's ensemble
    column: str                         # table column ("EL", "Mouth", "Baseline m0")
    classes: list[str]                  # the trained data set's classes (confusion order)
    expected_folds: list[int]           # folds the plan trained this system on
    fold_accuracy: dict[int, float]     # fraction correct per fold with predictions
    mean_accuracy: float                # mean over folds: the paper's number
    pooled_accuracy: float              # over all test samples together
    n_samples: int                      # scored rows (samples x folds)
    dropped_labels: dict[str, int] = field(default_factory=dict)   # cross-data set only
    fold_confusion: dict[int, np.ndarray] = field(default_factory=dict)
    confusion: np.ndarray | None = None
    sd_accuracy: float = float("nan")   # sample sd of the fold accuracies (ddof=1)
    macro_f1: float = float("nan")      # of the fold-summed matrix
    recall: dict[str, float] = field(default_factory=dict)   # per class, of the fold-summed matrix
    # one row per scored test image (fold, sample_id, correct): what the paired tests and the
    # bootstrap resample
    outcomes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=OUTCOME_COLUMNS))

    @property
    def is_ensemble(self) -> bool:
        return self.member is None

    @property
    def cross(self) -> bool:
        return self.train_dataset != self.eval_dataset

    @property
    def missing_folds(self) -> list[int]:
        return [f for f in self.expected_folds if f not in self.fold_accuracy]


@dataclass
class RunEvaluation:
    results: RunResults
    scores: list[SystemScore]
    gaps: pd.DataFrame                  # ensemble gaps (ensemble.GAP_COLUMNS)
    pairs: list[tuple[str, str]]        # (trained on, tested on), self pairs first

    @property
    def plan(self) -> RunPlan:
        return self.results.plan

    def score(self, train: str, test: str, column: str) -> SystemScore | None:
        for s in self.scores:
            if (s.train_dataset, s.eval_dataset, s.column) == (train, test, column):
                return s
        return None

    def for_pair(self, train: str, test: str) -> list[SystemScore]:
        return [s for s in self.scores if (s.train_dataset, s.eval_dataset) == (train, test)]

    @property
    def self_pairs(self) -> list[tuple[str, str]]:
        return [p for p in self.pairs if p[0] == p[1]]

    @property
    def cross_pairs(self) -> list[tuple[str, str]]:
        return [p for p in self.pairs if p[0] != p[1]]


def member_sort_key(member: str) -> tuple[int, str]:
    # EL parts in the paper's column order, Baseline/FTL members by name (m0..m4).
    return (PART_ORDER.index(member), "") if member in PART_ORDER else (len(PART_ORDER), member)


def network_sort_key(network: str) -> tuple[int, str]:
    order = list(NETWORKS)
    return (order.index(network), "") if network in order else (len(order), network)


def members_by_network(plan: RunPlan) -> dict[tuple[str, str], list[str]]:
    """The members each (data set, network) ensemble needs, from the plan."""
    found: dict[tuple[str, str], set[str]] = {}
    for record in plan.models:
        found.setdefault((record.dataset, record.network), set()).add(record.member)
    return {key: sorted(members, key=member_sort_key) for key, members in found.items()}


def _planned_folds(plan: RunPlan, dataset: str, network: str, member: str | None) -> list[int]:
    return sorted({r.fold for r in plan.models if r.dataset == dataset and r.network == network
                   and (member is None or r.member == member)})


def _pairs(results: RunResults) -> list[tuple[str, str]]:
    plan, preds = results.plan, results.predictions
    trained = sorted({r.dataset for r in plan.models})
    cross = {(d, e) for d in trained for e in plan.datasets[d].eval_on if e != d}
    cross |= {(d, e) for d, e in preds[["dataset", "eval_dataset"]].drop_duplicates().itertuples(
        index=False) if d != e}
    return [(d, d) for d in trained] + sorted(cross)


def _score(rows: pd.DataFrame, train: str, test: str, network: str, member: str | None,
           plan: RunPlan) -> SystemScore:
    classes = list(plan.datasets[train].classes)
    known, dropped = metrics.split_known(rows, classes)
    if dropped and train == test:
        raise metrics.LabelError(
            f"{network} {member or 'ensemble'} on {train}: labels {sorted(dropped)} are not among "
            f"the data set's own classes {classes} (predictions contradict plan.json)")
    known = known.assign(pred=metrics.predicted_labels(list(known["probs"]), classes))
    per_fold_confusion = metrics.fold_confusions(known, classes)
    per_fold = metrics.fold_accuracies(known)
    summed = metrics.summed_confusion(per_fold_confusion, len(classes))
    return SystemScore(
        train_dataset=train, eval_dataset=test, network=network, member=member,
        column=column_name(network, member), classes=classes,
        expected_folds=_planned_folds(plan, train, network, member),
        fold_accuracy=per_fold, mean_accuracy=metrics.mean_over_folds(per_fold),
        pooled_accuracy=metrics.pooled_accuracy(known), n_samples=len(known),
        dropped_labels=dropped, fold_confusion=per_fold_confusion, confusion=summed,
        sd_accuracy=metrics.sd_over_folds(per_fold), macro_f1=metrics.macro_f1(summed),
        recall=dict(zip(classes, metrics.per_class_recall(summed).tolist())),
        outcomes=pd.DataFrame({"fold": known["fold"].astype(int).to_numpy(),
                               "sample_id": known["sample_id"].astype(str).to_numpy(),
                               "correct": (known["label"] == known["pred"]).to_numpy(dtype=bool)},
                              columns=OUTCOME_COLUMNS),
    )


def evaluate_run(results: RunResults) -> RunEvaluation:
    """Ensembles and members scored on every (trained on, tested on) pair of the run."""
    plan, preds = results.plan, results.predictions
    members = members_by_network(plan)
    ensembled, gaps = ensemble_predictions(preds, members)
    pairs = _pairs(results)
    empty = preds.iloc[0:0]
    member_rows = dict(tuple(preds.groupby(["dataset", "eval_dataset", "network", "member"])))
    ensemble_rows = dict(tuple(ensembled.groupby(["dataset", "eval_dataset", "network"])))
    scores: list[SystemScore] = []
    for train, test in pairs:
        networks = sorted({n for d, n in members if d == train}, key=network_sort_key)
        for network in networks:
            rows = ensemble_rows.get((train, test, network), ensembled.iloc[0:0])
            scores.append(_score(rows, train, test, network, None, plan))
            for member in members[(train, network)]:
                rows = member_rows.get((train, test, network, member), empty)
                scores.append(_score(rows, train, test, network, member, plan))
    return RunEvaluation(results=results, scores=scores, gaps=gaps, pairs=pairs)
