"""load_run: one DataFrame of every model's predictions; absent or broken files reported."""
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from run_builder import CK_CLASSES, model_key
from partfer.results.load import COLUMNS, RunDirError, PlanError, load_run


def test_loads_every_model_with_the_contract_columns(shrunk_run):
    results = load_run(shrunk_run)
    frame = results.predictions
    assert tuple(frame.columns) == COLUMNS
    assert results.missing == []
    # CK+: 15 models x 3 folds, each on its fold (4 + 5 + 3 samples) = 15 x 12 rows;
    # SFEW: 15 models x (6 own + 12 CK+ + 7 JAFFE) rows, the cross rows from extra files.
    assert len(frame) == 15 * 12 + 15 * (6 + 12 + 7)
    assert results.missing_cross == []
    row = frame[(frame["network"] == "el") & (frame["member"] == "mouth")
                & (frame["dataset"] == "ckplus") & (frame["sample_id"] == "ck05")].iloc[0]
    assert row["fold"] == 1 and row["stage"] == "finetune" and row["label"] == "contempt"
    assert isinstance(row["probs"], np.ndarray) and row["probs"].shape == (len(CK_CLASSES),)
    cross = frame[(frame["dataset"] == "sfew") & (frame["eval_dataset"] != "sfew")]
    assert set(cross["sample_fold"]) == {-1} and set(cross["fold"]) == {0}
    assert cross.groupby("eval_dataset").size().to_dict() == {"ckplus": 15 * 12, "jaffe": 15 * 7}


def test_cross_dataset_files_absent_or_broken_are_reported_apart(make_run):
    run = make_run(datasets=("sfew",), cross=("ckplus", "jaffe"))
    store = run.parent.parent
    gone = model_key("sfew", "el", "mouth", 0)
    (store / "models" / gone / "cross_jaffe.parquet").unlink()
    # A cross-data-set file holding the model's own data set's rows breaks the contract.
    own_rows = model_key("sfew", "ftl", "m1", 0)
    pq.write_table(pq.read_table(store / "models" / own_rows / "predictions.parquet"),
                   store / "models" / own_rows / "cross_ckplus.parquet")
    # The same JAFFE samples in two of one model's files: the second is refused.
    twice = model_key("sfew", "baseline", "m0", 0)
    pq.write_table(pq.read_table(store / "models" / twice / "cross_jaffe.parquet"),
                   store / "models" / twice / "cross_ckplus.parquet")
    results = load_run(run)
    assert results.missing == []                 # own predictions all usable
    reasons = {(m.record.key, m.path.rsplit("/", 1)[-1]): m.reason for m in results.missing_cross}
    assert reasons == {
        (gone, "cross_jaffe.parquet"): "file absent",
        (own_rows, "cross_ckplus.parquet"): "holds rows of the model's own data set 'sfew' "
                                            "(cross-data-set files hold other data sets only)",
        (twice, "cross_jaffe.parquet"): "sample jaffe/jf0 is already predicted by another file",
    }
    assert all(m.cross for m in results.missing_cross)
    frame = results.predictions
    mouth = frame[(frame["member"] == "mouth") & (frame["network"] == "el")]
    assert set(mouth["eval_dataset"]) == {"sfew", "ckplus"}


def test_missing_model_is_listed_not_loaded(make_run):
    gone = model_key("ckplus", "el", "nose", 1)
    results = load_run(make_run(drop_models={gone}))
    assert [m.record.key for m in results.missing] == [gone]
    assert results.missing[0].reason == "no predictions.parquet"
    assert results.missing[0].path.endswith(f"{gone}/predictions.parquet")
    frame = results.predictions
    assert frame[(frame["network"] == "el") & (frame["member"] == "nose") & (frame["fold"] == 1)
                 & (frame["dataset"] == "ckplus")].empty


def test_broken_predictions_file_is_reported_with_its_reason(make_run):
    run = make_run()
    key = model_key("ckplus", "ftl", "m2", 0)
    path = run.parent.parent / "models" / key / "predictions.parquet"
    table = pq.read_table(path)
    # Probabilities with 3 values for a 4-class data set break the contract.
    short = pa.array([[0.2, 0.3, 0.5]] * len(table), type=pa.list_(pa.float32()))
    pq.write_table(table.set_column(table.schema.get_field_index("probs"), "probs", short), path)
    bad_key = model_key("ckplus", "ftl", "m3", 0)
    (run.parent.parent / "models" / bad_key / "predictions.parquet").write_bytes(b"not parquet")
    # Fold 2's model predicting fold 1's test samples: its fold number is wrong.
    stray_key = model_key("ckplus", "ftl", "m4", 2)
    stray = pq.read_table(run.parent.parent / "models" / model_key("ckplus", "ftl", "m4", 1)
                          / "predictions.parquet")
    pq.write_table(stray, run.parent.parent / "models" / stray_key / "predictions.parquet")
    results = load_run(run)
    reasons = {m.record.key: m.reason for m in results.missing}
    assert set(reasons) == {key, bad_key, stray_key}
    assert "4 values" in reasons[key]
    assert "unreadable" in reasons[bad_key]
    assert reasons[stray_key] == "holds test samples of fold 1, not of its own fold 2"


def test_missing_plan_and_bad_plan_raise_clear_errors(tmp_path):
    with pytest.raises(RunDirError, match="plan.json"):
        load_run(tmp_path)
    (tmp_path / "plan.json").write_text("{\"run_id\": 1}")
    with pytest.raises(PlanError, match="not a valid run plan"):
        load_run(tmp_path)


def test_moved_storage_is_still_readable(make_run, tmp_path):
    # plan.storage names the old place; the <storage>/runs/<run_id> layout finds the new one.
    run = make_run()
    moved = tmp_path / "copied"
    shutil.move(str(run.parent.parent), moved)
    results = load_run(moved / "runs" / run.name)
    assert results.missing == [] and len(results.predictions) == 15 * 12 + 15 * 18
    assert results.missing_cross == []
