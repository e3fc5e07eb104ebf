"""Per-fold / mean / pooled accuracy, confusion matrices, and cross-data-set class matching."""
import math

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from partfer.results import metrics
from partfer.results.evaluate import evaluate_run
from partfer.results.load import load_run
from run_builder import CK_CLASSES, SFEW_CLASSES, model_key


@pytest.fixture(scope="module")
def evaluation(shrunk_run):
    return evaluate_run(load_run(shrunk_run))


def test_per_fold_mean_and_pooled_accuracy(evaluation):
    el = evaluation.score("ckplus", "ckplus", "EL")
    # Folds: AECD -> 3/4, ABECD -> 3/5, BBE -> 1/3 (see run_builder's scenario table).
    assert el.fold_accuracy == pytest.approx({0: 0.75, 1: 0.6, 2: 1 / 3})
    assert el.mean_accuracy == pytest.approx((0.75 + 0.6 + 1 / 3) / 3)
    assert el.pooled_accuracy == pytest.approx(7 / 12)
    eyebrows = evaluation.score("ckplus", "ckplus", "Eyebrows")   # group 1: right in B, C, E
    assert eyebrows.fold_accuracy == pytest.approx({0: 0.5, 1: 0.6, 2: 1.0})
    mouth = evaluation.score("ckplus", "ckplus", "Mouth")         # group 2: right in A, C
    assert mouth.fold_accuracy == pytest.approx({0: 0.5, 1: 0.4, 2: 0.0})
    assert evaluation.score("ckplus", "ckplus", "FTL m0").mean_accuracy == 0.0
    assert evaluation.score("ckplus", "ckplus", "FTL").mean_accuracy == 1.0


def test_ensemble_beats_majority_vote_on_fold_zero(shrunk_run, evaluation):
    preds = load_run(shrunk_run).predictions
    fold0 = preds[(preds["dataset"] == "ckplus") & (preds["network"] == "el") & (preds["fold"] == 0)]
    votes = fold0.assign(pred=[CK_CLASSES[int(np.argmax(p))] for p in fold0["probs"]])
    majority = votes.groupby("sample_id").agg(label=("label", "first"),
                                              pred=("pred", lambda s: s.value_counts().index[0]))
    assert metrics.accuracy(majority["label"], majority["pred"]) == 0.5    # A lost by the vote
    assert evaluation.score("ckplus", "ckplus", "EL").fold_accuracy[0] == 0.75


def test_fold_summed_confusion_is_the_sum_of_fold_matrices(evaluation):
    el = evaluation.score("ckplus", "ckplus", "EL")
    assert sorted(el.fold_confusion) == [0, 1, 2]
    np.testing.assert_array_equal(el.confusion, sum(el.fold_confusion.values()))
    assert el.confusion.sum() == 12 and np.trace(el.confusion) == 7
    # Fold 0: anger, contempt, happiness right; surprise (D) predicted as the next class, anger.
    expected0 = np.zeros((4, 4), dtype=int)
    expected0[0, 0] = expected0[1, 1] = expected0[2, 2] = expected0[3, 0] = 1
    np.testing.assert_array_equal(el.fold_confusion[0], expected0)
    assert el.classes == CK_CLASSES


def test_cross_dataset_drops_and_counts_contempt(evaluation):
    assert evaluation.cross_pairs == [("sfew", "ckplus"), ("sfew", "jaffe")]
    el = evaluation.score("sfew", "ckplus", "EL")
    assert el.dropped_labels == {"contempt": 3}
    assert el.n_samples == 9 and el.classes == SFEW_CLASSES
    assert el.mean_accuracy == pytest.approx(6 / 9)     # DDAAAEBCC: A, A, A, E, C, C right
    assert el.confusion.shape == (3, 3) and el.confusion.sum() == 9
    assert evaluation.score("sfew", "ckplus", "Baseline").mean_accuracy == 1.0
    assert evaluation.score("sfew", "ckplus", "Mouth").mean_accuracy == pytest.approx(5 / 9)
    # JAFFE: "fear" is not an SFEW class of this test run; AACDBC -> 4 of 6 right.
    jaffe = evaluation.score("sfew", "jaffe", "EL")
    assert jaffe.dropped_labels == {"fear": 1} and jaffe.n_samples == 6
    assert jaffe.mean_accuracy == pytest.approx(4 / 6)


def _relabel(path, old, new):
    table = pq.read_table(path)
    label = pc.if_else(pc.equal(table["label"], old), new, table["label"])
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", label), path)


def test_conflicting_or_foreign_labels_are_errors(make_run):
    run = make_run(datasets=("ckplus",))
    models = run.parent.parent / "models"
    # One member disagreeing with the others about a sample's label: the ensemble refuses.
    _relabel(models / model_key("ckplus", "el", "jaw", 0) / "predictions.parquet", "anger", "fear")
    with pytest.raises(ValueError, match="ck00.*different members"):
        evaluate_run(load_run(run))
    # Every EL member agreeing on a class CK+ was not trained on: the predictions contradict the plan.
    for part in ("eyebrows", "eyes", "nose", "mouth"):
        _relabel(models / model_key("ckplus", "el", part, 0) / "predictions.parquet", "anger", "fear")
    with pytest.raises(metrics.LabelError, match="fear"):
        evaluate_run(load_run(run))


def test_pure_metric_functions():
    assert math.isnan(metrics.accuracy([], []))
    assert metrics.mean_over_folds({}) != metrics.mean_over_folds({})        # NaN, not 0
    frame = pd.DataFrame({"sample_id": ["a", "a", "b", "c"], "fold": [0, 1, 0, 0],
                          "label": ["contempt", "contempt", "anger", "fear"]})
    kept, dropped = metrics.split_known(frame, ["anger", "fear"])
    assert dropped == {"contempt": 1} and list(kept["sample_id"]) == ["b", "c"]
    cm = metrics.confusion_matrix(["anger", "fear", "fear"], ["fear", "fear", "anger"],
                                  ["anger", "fear"])
    np.testing.assert_array_equal(cm, [[0, 1], [1, 1]])
    with pytest.raises(metrics.LabelError, match="contempt"):
        metrics.confusion_matrix(["contempt"], ["anger"], ["anger", "fear"])
    assert list(metrics.predicted_labels([np.array([0.1, 0.9]), np.array([0.6, 0.4])],
                                         ["anger", "fear"])) == ["fear", "anger"]


def test_spread_recall_and_macro_f1():
    assert metrics.sd_over_folds({0: 0.5, 1: 0.7, 2: 0.9}) == pytest.approx(0.2)
    assert math.isnan(metrics.sd_over_folds({0: 0.5}))          # one fold has no spread
    confusion = np.array([[3, 1, 0], [1, 1, 0], [0, 0, 0]])
    recall = metrics.per_class_recall(confusion)
    assert recall[:2].tolist() == [0.75, 0.5] and math.isnan(recall[2])
    # F1 = 2 TP / (true + predicted): 6/8 and 2/4; the class never seen nor predicted is left out
    assert metrics.macro_f1(confusion) == pytest.approx((0.75 + 0.5) / 2)
    assert metrics.macro_f1(np.array([[0, 2], [0, 0]])) == 0.0    # predicted, never right
    assert math.isnan(metrics.macro_f1(np.zeros((2, 2))))


def test_scores_carry_spread_recall_and_macro_f1(evaluation):
    el = evaluation.score("ckplus", "ckplus", "EL")
    assert el.sd_accuracy == pytest.approx(np.std([0.75, 0.6, 1 / 3], ddof=1))
    rows = el.confusion.sum(axis=1)
    assert el.recall == pytest.approx({c: el.confusion[i, i] / rows[i] for i, c in enumerate(CK_CLASSES)})
    assert el.macro_f1 == pytest.approx(metrics.macro_f1(el.confusion))
    assert math.isnan(evaluation.score("sfew", "sfew", "EL").sd_accuracy)     # one holdout fold
