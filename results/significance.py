"""Is a gap between two networks more than noise? Paired tests and bootstrap intervals for Table I.

Two networks of one data set are tested on the same folds and the same test images, so both
tests are paired:
  - Wilcoxon signed-rank on the per-fold accuracies (the unit the paper averages over). With n
    folds its exact two-sided p can be no smaller than 2 / 2**n: 5 folds can never give p < 0.05.
  - McNemar's exact test on the pooled per-image outcomes: of the images exactly one network got
    right, is the split further from 50:50 than chance allows (a binomial test)?
Each Table I cell also gets a percentile bootstrap interval: the test images of each fold are
resampled with replacement and the accuracy recomputed as the mean over folds, so the interval
describes the test-set noise of the paper's number (not the training noise of the models). The
generator is seeded from the data set and the column, so a rebuild gives identical numbers.
No correction for multiple comparisons is applied: each p stands for its own pair.
"""
from __future__ import annotations

import itertools
import math
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from partfer import atomicio
from partfer.orchestrator.run_files import TABLES_DIR
from partfer.results.evaluate import RunEvaluation, SystemScore
from partfer.results.markdown import markdown_table, pct
from partfer.results.paper import COLUMNS

ALPHA = 0.05                      # the level a reader usually asks about
CONFIDENCE = 0.95                 # bootstrap interval coverage
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 28               # combined with the data set and column names, see _rng
ENSEMBLE_COLUMNS = ("Baseline", "FTL", "EL")    # the pairs the report shows; the CSVs have all
DIGITS = 10                       # fold accuracies are rounded so equal fractions tie exactly

WILCOXON_FILE = "significance_wilcoxon.csv"
MCNEMAR_FILE = "significance_mcnemar.csv"
BOOTSTRAP_FILE = "bootstrap_intervals.csv"


@dataclass
class PairTest:
    """Both paired tests of network `first` against `second` on one data set."""
    dataset: str
    first: str
    second: str
    n_folds: int                  # folds both networks were scored on
    mean_difference: float        # first minus second, mean over those folds (fraction)
    wilcoxon_statistic: float     # NaN when the test cannot run
    wilcoxon_p: float
    smallest_p: float             # the smallest exact two-sided p these folds allow
    wilcoxon_note: str            # why the test did not run, or ""
    n_images: int                 # test images both networks were scored on
    only_first: int               # images only `first` got right
    only_second: int
    mcnemar_p: float


@dataclass
class Interval:
    """A bootstrap interval of one Table I cell."""
    dataset: str
    column: str
    n_folds: int
    n_images: int
    accuracy: float               # mean over folds (the Table I number)
    low: float
    high: float


@dataclass
class Significance:
    pairs: list[PairTest]
    intervals: list[Interval]

    def pairs_of(self, dataset: str, columns=ENSEMBLE_COLUMNS) -> list[PairTest]:
        return [p for p in self.pairs if p.dataset == dataset and p.first in columns
                and p.second in columns]

    def intervals_of(self, dataset: str) -> list[Interval]:
        return [i for i in self.intervals if i.dataset == dataset]


def smallest_exact_p(n_folds: int) -> float:
    """The smallest two-sided p the exact signed-rank test can give with n paired folds (all
    differences of one sign): 2 / 2**n."""
    return min(1.0, 2.0 / 2 ** n_folds) if n_folds > 0 else 1.0


def wilcoxon_folds(first: dict[int, float], second: dict[int, float]
                   ) -> tuple[int, float, float, float, str]:
    """(folds, mean difference, statistic, p, note) of the signed-rank test on shared folds."""
    folds = sorted(set(first) & set(second))
    diffs = np.array([round(first[f], DIGITS) - round(second[f], DIGITS) for f in folds])
    mean = float(diffs.mean()) if len(diffs) else float("nan")
    if len(folds) < 2:
        return len(folds), mean, math.nan, math.nan, f"{len(folds)} fold(s): no paired test"
    if not np.any(np.round(diffs, DIGITS)):
        return len(folds), mean, math.nan, math.nan, "same accuracy on every fold"
    with warnings.catch_warnings():          # scipy warns about ties/zeros; its p stays valid
        warnings.simplefilter("ignore")
        result = stats.wilcoxon(np.round(diffs, DIGITS))
    return len(folds), mean, float(result.statistic), float(result.pvalue), ""


def mcnemar_exact(first: pd.DataFrame, second: pd.DataFrame) -> tuple[int, int, int, float]:
    """(images, only first right, only second right, p): McNemar's exact test on the images both
    systems were scored on (outcome frames of evaluate.OUTCOME_COLUMNS)."""
    joined = first.merge(second, on=["fold", "sample_id"], suffixes=("_a", "_b"))
    a, b = joined["correct_a"].to_numpy(dtype=bool), joined["correct_b"].to_numpy(dtype=bool)
    only_first, only_second = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = only_first + only_second
    p = float(stats.binomtest(only_first, discordant, 0.5).pvalue) if discordant else 1.0
    return len(joined), only_first, only_second, p


def _rng(dataset: str, column: str) -> np.random.Generator:
    return np.random.default_rng([BOOTSTRAP_SEED, zlib.crc32(dataset.encode()),
                                  zlib.crc32(column.encode())])


def bootstrap_interval(outcomes: pd.DataFrame, rng: np.random.Generator,
                       resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Percentile interval of the mean-over-folds accuracy, resampling images within each fold."""
    if outcomes.empty:
        return math.nan, math.nan
    per_fold = []
    for _, group in outcomes.groupby("fold", sort=True):
        correct = group["correct"].to_numpy(dtype=float)
        picks = rng.integers(0, len(correct), size=(resamples, len(correct)))
        per_fold.append(correct[picks].mean(axis=1))
    means = np.mean(per_fold, axis=0)
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def _table1_scores(ev: RunEvaluation, dataset: str) -> list[SystemScore]:
    found = [ev.score(dataset, dataset, column) for column in COLUMNS]
    return [s for s in found if s is not None and s.fold_accuracy]


def significance(ev: RunEvaluation) -> Significance:
    """Every pair of Table I columns and every cell's interval, for each data set tested on itself."""
    pairs, intervals = [], []
    for dataset, _ in ev.self_pairs:
        scores = _table1_scores(ev, dataset)
        for a, b in itertools.combinations(scores, 2):
            folds, mean, statistic, p, note = wilcoxon_folds(a.fold_accuracy, b.fold_accuracy)
            images, only_a, only_b, mcnemar_p = mcnemar_exact(a.outcomes, b.outcomes)
            pairs.append(PairTest(dataset, a.column, b.column, folds, mean, statistic, p,
                                  smallest_exact_p(folds), note, images, only_a, only_b, mcnemar_p))
        for score in scores:
            low, high = bootstrap_interval(score.outcomes, _rng(dataset, score.column))
            intervals.append(Interval(dataset, score.column, len(score.fold_accuracy),
                                      len(score.outcomes), score.mean_accuracy, low, high))
    return Significance(pairs, intervals)


def _p(value: float) -> str:
    if math.isnan(value):
        return ""
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def wilcoxon_frame(sig: Significance) -> pd.DataFrame:
    return pd.DataFrame(
        [[p.dataset, p.first, p.second, p.n_folds, round(100 * p.mean_difference, 2),
          p.wilcoxon_statistic, p.wilcoxon_p, p.smallest_p, p.wilcoxon_note] for p in sig.pairs],
        columns=["dataset", "first", "second", "folds", "mean_difference_pp", "statistic",
                 "p", "smallest_possible_p", "note"])


def mcnemar_frame(sig: Significance) -> pd.DataFrame:
    return pd.DataFrame(
        [[p.dataset, p.first, p.second, p.n_images, p.only_first, p.only_second, p.mcnemar_p]
         for p in sig.pairs],
        columns=["dataset", "first", "second", "images", "only_first_right",
                 "only_second_right", "p"])


def bootstrap_frame(sig: Significance) -> pd.DataFrame:
    return pd.DataFrame(
        [[i.dataset, i.column, i.n_folds, i.n_images, round(100 * i.accuracy, 2),
          round(100 * i.low, 2), round(100 * i.high, 2), BOOTSTRAP_RESAMPLES, CONFIDENCE]
         for i in sig.intervals],
        columns=["dataset", "column", "folds", "images", "accuracy_pct", "low_pct", "high_pct",
                 "resamples", "confidence"])


def write_significance(sig: Significance, run_dir: Path) -> dict[str, Path]:
    """tables/significance_wilcoxon.csv, significance_mcnemar.csv and bootstrap_intervals.csv."""
    out = Path(run_dir) / TABLES_DIR
    frames = {WILCOXON_FILE: wilcoxon_frame(sig), MCNEMAR_FILE: mcnemar_frame(sig),
              BOOTSTRAP_FILE: bootstrap_frame(sig)}
    return {name: atomicio.write_text(out / name, frame.to_csv(index=False, float_format="%.6g",
                                                                lineterminator="\n"))
            for name, frame in frames.items()}


def method_text() -> str:
    """What was tested and resampled, said once above the per-data-set tables."""
    return (f"Paired tests between the networks (same folds, same test images): Wilcoxon "
            f"signed-rank on the per-fold accuracies (`scipy.stats.wilcoxon`), and McNemar's exact "
            f"test on the pooled per-image outcomes (a binomial test of the images only one of the "
            f"two got right, `scipy.stats.binomtest`). No correction for multiple comparisons. "
            f"Intervals: {CONFIDENCE:.0%} percentile bootstrap of each Table I cell, "
            f"{BOOTSTRAP_RESAMPLES} resamples of the test images within each fold (the accuracy "
            f"recomputed as the mean over folds; seeded, so a rebuild gives the same bounds); "
            f"they show the test-set noise, not the spread between training runs.\n")


def fold_count_text(n_folds: int) -> str:
    """Whether the signed-rank test can reach ALPHA at all with this many folds."""
    if n_folds < 2:
        return (f"{n_folds} fold: the Wilcoxon test needs several paired folds, so only McNemar's "
                "test and the intervals apply.")
    smallest = smallest_exact_p(n_folds)
    if smallest >= ALPHA:
        return (f"**{n_folds} folds: too few for the Wilcoxon test to reach p < {ALPHA:g}** (its "
                f"smallest exact two-sided p is {smallest:.4g}, when every fold favours the same "
                "network); read its p as a description, McNemar's test on the images as the test.")
    return (f"{n_folds} folds: the Wilcoxon test can reach p < {ALPHA:g} (smallest exact "
            f"two-sided p {smallest:.4g}).")


def significance_markdown(sig: Significance, dataset: str) -> str:
    """One data set's pairs (Baseline/FTL/EL) and the intervals of every Table I cell."""
    parts = []
    pairs = sig.pairs_of(dataset)
    if pairs:
        folds = max(p.n_folds for p in pairs)
        parts.append(fold_count_text(folds) + "\n")
        rows = [[f"{p.first} - {p.second}", str(p.n_folds), f"{100 * p.mean_difference:+.2f}",
                 "" if math.isnan(p.wilcoxon_statistic) else f"{p.wilcoxon_statistic:g}",
                 _p(p.wilcoxon_p) or p.wilcoxon_note, str(p.n_images), str(p.only_first),
                 str(p.only_second), _p(p.mcnemar_p)] for p in pairs]
        parts.append(markdown_table(
            ["pair", "folds", "mean difference (pp)", "Wilcoxon W", "Wilcoxon p", "images",
             "only first right", "only second right", "McNemar p"], rows))
    intervals = sig.intervals_of(dataset)
    if intervals:
        parts.append(f"{CONFIDENCE:.0%} bootstrap intervals (%):\n")
        parts.append(markdown_table(
            ["", *[i.column for i in intervals]],
            [["ours (mean over folds)", *[pct(i.accuracy) for i in intervals]],
             ["interval", *[f"{pct(i.low)} to {pct(i.high)}" for i in intervals]]]))
    return "\n".join(parts)
