"""Did each network learn? A Table I number of a network that never left chance, or whose landmark
pre-training never beat the mean shape, says nothing about the method: the report flags it.

Two checks per (data set, network), on the run's own files:
- every classification stage (Baseline; head and fine-tune of FTL and EL): the mean over the
  network's models of the last epoch's training accuracy, against chance (1 / classes);
- the landmark stage: its test error ("before" in the landmark study) against the mean shape's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from partfer.orchestrator.networks import column_of
from partfer.results.landmarks import LandmarkStudy, summary_frame
from partfer.results.load import HISTORY_FILE, RunResults, resolve_stored

# "Within a few points of chance": a final training accuracy below chance + this margin.
CHANCE_MARGIN = 0.05
# "No better than the mean shape": a landmark error above this share of the mean shape's.
MEAN_SHAPE_SHARE = 0.9
CLASSIFY_STAGES = ("baseline", "head", "finetune")


@dataclass(frozen=True)
class NotLearned:
    dataset: str
    network: str          # baseline | ftl | el
    reason: str           # one line

    @property
    def column(self) -> str:
        return column_of(self.network)


def _final_train_accuracy(path) -> float | None:
    try:
        history = pd.read_csv(path)
    except (OSError, ValueError):
        return None
    if "train_acc" not in history.columns or history.empty:
        return None
    value = pd.to_numeric(history["train_acc"], errors="coerce").dropna()
    return float(value.iloc[-1]) if len(value) else None


def training_accuracies(results: RunResults) -> pd.DataFrame:
    """The last epoch's training accuracy of every classification stage of every model."""
    rows = []
    for record in results.plan.models:
        for stage, rel in record.stage_dirs.items():
            if stage not in CLASSIFY_STAGES:
                continue
            acc = _final_train_accuracy(resolve_stored(results.storage_root, rel) / HISTORY_FILE)
            if acc is not None:
                rows.append([record.dataset, record.network, record.member, record.fold, stage, acc])
    return pd.DataFrame(rows, columns=["dataset", "network", "member", "fold", "stage", "train_acc"])


def not_learned(results: RunResults, study: LandmarkStudy) -> list[NotLearned]:
    """The networks of the run's selection that did not learn, each with its reason."""
    flags: dict[tuple[str, str], list[str]] = {}
    accs = training_accuracies(results)
    for (dataset, network, stage), group in accs.groupby(["dataset", "network", "stage"], sort=False):
        chance = 1 / len(results.plan.datasets[dataset].classes)
        mean = float(group["train_acc"].mean())
        if mean < chance + CHANCE_MARGIN:
            flags.setdefault((dataset, network), []).append(
                f"its {stage} stage ended at {100 * mean:.1f} % training accuracy (chance {100 * chance:.1f} %)")
    if study.planned:
        for r in summary_frame(study).itertuples(index=False):
            if math.isnan(r.mae_before) or math.isnan(r.mae_mean_shape):
                continue
            if r.mae_before > MEAN_SHAPE_SHARE * r.mae_mean_shape:
                flags.setdefault((r.dataset, r.network), []).append(
                    f"its landmark stage ({r.region}) localises no better than the mean shape "
                    f"({r.px_before:.2f} px against {r.px_mean_shape:.2f} px)")
    return [NotLearned(d, n, "; ".join(reasons)) for (d, n), reasons in flags.items()]


def flag_lines(flags: list[NotLearned], dataset: str) -> list[str]:
    """One line per flagged network of a data set, for the report."""
    return [f"⚠ {f.column} did not learn: {f.reason}. Its accuracy here says nothing about the method "
            "(too few steps, or a rate too large for this budget)." for f in flags if f.dataset == dataset]
