import numpy as np
import pytest

from partfer.orchestrator.execution.folds import ProtocolError, fold_ids, fold_of_subject, make_split


def _subjects(n_subjects, per_subject):
    return [f"S{i:03d}" for i in range(n_subjects) for _ in range(per_subject)]


def test_kfold_deals_sorted_subjects_round_robin():
    subjects = ["S010", "S005", "S022", "S011", "S130", "S999", "S050"]
    owner = fold_of_subject(subjects, "kfold", 3)
    # sorted: S005 S010 S011 S022 S050 S130 S999 -> folds 0 1 2 0 1 2 0
    assert owner == {"S005": 0, "S010": 1, "S011": 2, "S022": 0, "S050": 1, "S130": 2, "S999": 0}


@pytest.mark.parametrize("protocol,n_folds,expected", [("loso", None, 7), ("kfold", 3, 3)])
def test_no_subject_in_two_test_folds_and_every_row_tested_once(protocol, n_folds, expected):
    subjects = _subjects(7, 5)
    splits = ["all"] * len(subjects)
    folds = fold_ids(subjects, protocol, n_folds)
    assert len(folds) == expected
    tested = np.zeros(len(subjects), dtype=int)
    for f in folds:
        s = make_split(subjects, splits, protocol, n_folds, f, val_fraction=0.2, seed=0)
        subj = np.asarray(subjects)
        test_s, train_s, val_s = set(subj[s.test]), set(subj[s.train]), set(subj[s.val])
        assert not (test_s & train_s) and not (test_s & val_s) and not (train_s & val_s)
        assert len(s.train) + len(s.val) + len(s.test) == len(subjects)
        assert val_s, "a validation subject is held out of training"
        tested[s.test] += 1
    assert (tested == 1).all()


def test_validation_split_is_deterministic_per_seed():
    subjects = _subjects(10, 3)
    a = make_split(subjects, ["all"] * 30, "loso", None, 2, 0.2, seed=1)
    b = make_split(subjects, ["all"] * 30, "loso", None, 2, 0.2, seed=1)
    assert a.val.tolist() == b.val.tolist()


def test_holdout_uses_train_and_val_splits():
    subjects = [f"x{i}" for i in range(10)]
    splits = ["train"] * 7 + ["val"] * 3
    s = make_split(subjects, splits, "holdout", None, 0, 0.3, seed=0)
    assert s.test.tolist() == [7, 8, 9]
    assert sorted(s.train.tolist() + s.val.tolist()) == list(range(7))


def test_too_few_subjects_for_kfold_is_a_clear_error():
    with pytest.raises(ProtocolError, match="3 subjects cannot fill 10"):
        fold_of_subject(["a", "b", "c"], "kfold", 10)
