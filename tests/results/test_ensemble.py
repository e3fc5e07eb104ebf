"""Sum-of-softmax ensembling (paper Eq. 4), and gaps reported instead of silently ensembled."""
import numpy as np
import pytest

from partfer.results.ensemble import ensemble_argmax, ensemble_predictions, sum_softmax
from partfer.results.evaluate import evaluate_run, members_by_network
from partfer.results.load import load_run
from run_builder import CK_CLASSES, PARTS, member_probs, model_key


def _majority_vote(stack: np.ndarray) -> np.ndarray:
    votes = stack.argmax(axis=2)                      # (members, samples)
    return np.array([np.bincount(v, minlength=stack.shape[2]).argmax() for v in votes.T])


@pytest.mark.parametrize("scenario, ensemble_right", [("A", True), ("B", False)])
def test_sum_of_softmax_is_not_majority_vote(scenario, ensemble_right):
    # Three unsure members against two sure ones: the sum follows the sure pair, a vote the trio.
    stack = np.stack([member_probs(CK_CLASSES, "anger", scenario, p)[None] for p in range(5)])
    true = CK_CLASSES.index("anger")
    assert bool(ensemble_argmax(stack)[0] == true) is ensemble_right
    assert bool(_majority_vote(stack)[0] == true) is not ensemble_right
    np.testing.assert_allclose(sum_softmax(stack), stack.sum(axis=0), rtol=1e-6)


def test_sum_softmax_rejects_wrong_shape():
    with pytest.raises(ValueError, match="members, samples, classes"):
        sum_softmax(np.ones((5, 3)))


def test_run_ensemble_sums_the_five_members(shrunk_run):
    results = load_run(shrunk_run)
    ensembled, gaps = ensemble_predictions(results.predictions, members_by_network(results.plan))
    assert gaps.empty
    el0 = ensembled[(ensembled["dataset"] == "ckplus") & (ensembled["network"] == "el")
                    & (ensembled["eval_dataset"] == "ckplus") & (ensembled["fold"] == 0)]
    assert list(el0["sample_id"]) == ["ck00", "ck01", "ck02", "ck03"]
    expected = sum(member_probs(CK_CLASSES, "anger", "A", p) for p in range(5))
    np.testing.assert_allclose(el0.iloc[0]["probs"], expected, rtol=1e-6)
    # Scenarios A, E, C, D: right, right, right, wrong under the sum of softmax.
    preds = [CK_CLASSES[int(np.argmax(p))] for p in el0["probs"]]
    assert [p == label for p, label in zip(preds, el0["label"])] == [True, True, True, False]


def test_sample_missing_from_one_member_is_dropped_and_reported(make_run):
    key = model_key("ckplus", "baseline", "m2", 0)
    results = load_run(make_run(drop_rows={key: ["ck00"]}))
    ensembled, gaps = ensemble_predictions(results.predictions, members_by_network(results.plan))
    base0 = ensembled[(ensembled["dataset"] == "ckplus") & (ensembled["network"] == "baseline")
                      & (ensembled["fold"] == 0)]
    assert "ck00" not in set(base0["sample_id"]) and len(base0) == 3
    assert gaps.to_dict("records") == [{
        "dataset": "ckplus", "network": "baseline", "fold": 0, "eval_dataset": "ckplus",
        "missing_members": "m2", "n_dropped": 1, "n_ensembled": 3}]
    score = evaluate_run(results).score("ckplus", "ckplus", "Baseline")
    # Fold 0 is now scenarios D, C, C (B's sample ck00 dropped): 2 of 3.
    assert score.fold_accuracy[0] == pytest.approx(2 / 3)


def test_missing_member_model_leaves_its_fold_unensembled(make_run):
    results = load_run(make_run(drop_models={model_key("ckplus", "el", "nose", 1)}))
    ev = evaluate_run(results)
    gap = ev.gaps[(ev.gaps["network"] == "el") & (ev.gaps["dataset"] == "ckplus")]
    assert gap[["fold", "missing_members", "n_dropped", "n_ensembled"]].values.tolist() == [
        [1, "nose", 5, 0]]
    el = ev.score("ckplus", "ckplus", "EL")
    assert sorted(el.fold_accuracy) == [0, 2] and el.missing_folds == [1]
    assert el.mean_accuracy == pytest.approx((0.75 + 1 / 3) / 2)
    assert ev.score("ckplus", "ckplus", "Nose").missing_folds == [1]
    assert ev.score("ckplus", "ckplus", "Eyebrows").missing_folds == []


def test_members_come_from_the_plan_in_paper_order(shrunk_run):
    members = members_by_network(load_run(shrunk_run).plan)
    assert members[("ckplus", "el")] == PARTS
    assert members[("sfew", "ftl")] == ["m0", "m1", "m2", "m3", "m4"]
