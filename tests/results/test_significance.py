"""Paired tests between Table I's networks and bootstrap intervals of its cells."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from partfer.results.evaluate import evaluate_run
from partfer.results.load import load_run
from partfer.results.significance import (bootstrap_interval, fold_count_text,
                                          mcnemar_exact, significance, smallest_exact_p,
                                          wilcoxon_folds)


def test_five_folds_cannot_reach_five_percent_and_the_report_says_so():
    assert smallest_exact_p(5) == 0.0625 and smallest_exact_p(6) == 0.03125
    five = fold_count_text(5)
    assert "5 folds: too few" in five and "0.0625" in five
    assert "too few" not in fold_count_text(10)
    # every fold favouring one network: the exact test's floor, and scipy agrees
    folds, mean, _, p, note = wilcoxon_folds({f: 0.9 for f in range(5)},
                                             {f: 0.5 + 0.01 * f for f in range(5)})
    assert (folds, note) == (5, "") and p == pytest.approx(0.0625)
    assert mean == pytest.approx(0.38)
    assert math.isnan(wilcoxon_folds({0: 0.5}, {0: 0.4})[3])            # one fold: no test
    assert wilcoxon_folds({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6})[4] == "same accuracy on every fold"


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_images():
    ids = [f"s{i}" for i in range(20)]
    first = pd.DataFrame({"fold": 0, "sample_id": ids, "correct": [True] * 15 + [False] * 5})
    second = pd.DataFrame({"fold": 0, "sample_id": ids,
                           "correct": [True] * 5 + [False] * 10 + [True] * 2 + [False] * 3})
    images, only_first, only_second, p = mcnemar_exact(first, second)
    assert (images, only_first, only_second) == (20, 10, 2)
    assert p == pytest.approx(stats.binomtest(10, 12, 0.5).pvalue)


def test_bootstrap_is_seeded_and_resamples_within_folds():
    outcomes = pd.DataFrame({"fold": [0] * 10 + [1] * 4, "sample_id": [str(i) for i in range(14)],
                             "correct": [True] * 7 + [False] * 3 + [True, True, False, False]})
    low, high = bootstrap_interval(outcomes, np.random.default_rng(1))
    assert (low, high) == bootstrap_interval(outcomes, np.random.default_rng(1))
    assert low < (0.7 + 0.5) / 2 < high                # the mean over folds, not pooled
    everything = outcomes.assign(correct=True)
    assert bootstrap_interval(everything, np.random.default_rng(1)) == (1.0, 1.0)


def test_each_pair_of_networks_is_tested_on_the_same_images(shrunk_run):
    sig = significance(evaluate_run(load_run(shrunk_run)))
    pair = next(p for p in sig.pairs
                if (p.dataset, p.first, p.second) == ("ckplus", "Baseline", "FTL"))
    # builder scenarios: FTL's ensemble is right on all 12 CK+ images, Baseline's on 7 of them
    assert (pair.n_images, pair.only_first, pair.only_second) == (12, 0, 5)
    assert pair.mcnemar_p == pytest.approx(2 * 0.5 ** 5)
    assert pair.n_folds == 3 and pair.smallest_p == 0.25
    assert len(sig.pairs_of("ckplus")) == 3 and len(sig.pairs_of("sfew")) == 3
    assert len([p for p in sig.pairs if p.dataset == "ckplus"]) == 28   # all 8 Table I columns
    assert {i.column for i in sig.intervals_of("ckplus")} == {
        "Baseline", "FTL", "Eyebrows", "Eyes", "Nose", "Mouth", "Jaw", "EL"}
