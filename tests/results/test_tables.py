"""Table I / Table III files: exact columns and values, paper rows, warnings, missing folds."""
import pandas as pd
import pytest

from results.evaluate import evaluate_run
from results.load import load_run
from results.tables import table1_frame, write_tables
from run_builder import PAPER_SETTINGS, model_key


@pytest.fixture(scope="module")
def written(shrunk_run):
    ev = evaluate_run(load_run(shrunk_run))
    return write_tables(ev, shrunk_run)


def test_table1_csv_columns_and_values(written):
    assert written["table1.csv"].read_text() == (
        "dataset,Baseline,FTL,Eyebrows,Eyes,Nose,Mouth,Jaw,EL\n"
        # CK+ means over 3 folds, e.g. EL (75 + 60 + 33.33) / 3, Eyebrows (50 + 60 + 100) / 3.
        "ckplus,50.00,100.00,70.00,70.00,70.00,30.00,30.00,56.11\n"
        "sfew,16.67,50.00,50.00,50.00,50.00,50.00,50.00,66.67\n")


def test_table3_csv_has_own_and_cross_rows(written):
    assert written["table3.csv"].read_text() == (
        "train_dataset,test_dataset,Baseline,FTL,Eyebrows,Eyes,Nose,Mouth,Jaw,EL\n"
        "sfew,sfew,16.67,50.00,50.00,50.00,50.00,50.00,50.00,66.67\n"
        "sfew,ckplus,100.00,0.00,44.44,44.44,44.44,55.56,55.56,66.67\n")
    md = written["table3.md"].read_text()
    assert "dropped 3 test samples whose class the model was not trained on (contempt 3)" in md
    assert "| paper | 32.85 | 41.31 | 33.33 | 35.49 | 22.97 | 37.72 | 32.62 | 47.53 |" in md


def test_table1_md_sets_ours_beside_the_paper_with_a_warning(written):
    md = written["table1.md"].read_text()
    assert "| ours (mean over folds) | 50.00 | 100.00 | 70.00 | 70.00 | 70.00 | 30.00 | 30.00 | 56.11 |" in md
    assert "| paper | 82.56 | 95.87 | 93.29 | 93.96 | 91.86 | 95.16 | 93.28 | 97.31 |" in md
    assert "| difference | -32.56 | +4.13 | -23.29 | -23.96 | -21.86 | -65.16 | -63.28 | -41.20 |" in md
    warning = next(line for line in md.splitlines() if "NOT comparable" in line)
    assert warning.startswith("**") and warning.endswith("**")
    for reason in ("run marked shrunk", "epochs scaled by 0.01", "image size 32",
                   "synthetic", "CK+: 3 folds (paper: 10)"):
        assert reason in warning
    # The warning comes before the first comparison table.
    assert md.index("NOT comparable") < md.index("| ours (mean over folds)")
    # Per-fold table and the Baseline/FTL members table.
    assert "| 2 | 0.00 | 100.00 | 100.00 | 100.00 | 100.00 | 0.00 | 0.00 | 33.33 |" in md
    assert "| pooled | 58.33 | 100.00 | 66.67 | 66.67 | 66.67 | 33.33 | 33.33 | 58.33 |" in md
    assert "| baseline | 69.44 | 69.44 | 69.44 | 50.00 | 50.00 | 50.00 |" in md
    assert "| ftl | 0.00 | 0.00 | 0.00 | 100.00 | 100.00 | 100.00 |" in md


def test_members_and_folds_csv(written):
    members = pd.read_csv(written["members.csv"])
    row = members[(members["train_dataset"] == "ckplus") & (members["network"] == "baseline")
                  & (members["member"] == "m0")]
    assert row["accuracy"].item() == pytest.approx(69.44)
    folds = pd.read_csv(written["folds.csv"])
    el = folds[(folds["train_dataset"] == "ckplus") & (folds["test_dataset"] == "ckplus")
               & (folds["column"] == "EL")]
    assert el["accuracy"].tolist() == [75.0, 60.0, 33.33]


def test_missing_fold_is_stated_and_left_out_of_the_mean(make_run):
    run = make_run(drop_models={model_key("ckplus", "el", "nose", 1)})
    ev = evaluate_run(load_run(run))
    row = table1_frame(ev).set_index("dataset").loc["ckplus"]
    assert row["EL"] == pytest.approx(54.17) and row["Nose"] == pytest.approx(75.0)
    written = write_tables(ev, run)
    md = written["table1.md"].read_text()
    assert "EL: mean over 2 of 3 folds; missing folds 1" in md
    assert "Nose: mean over 2 of 3 folds; missing folds 1" in md
    assert "| 1 | 100.00 | 100.00 | 60.00 | 60.00 |  | 40.00 | 40.00 |  |" in md
    missing = pd.read_csv(written["missing.csv"])
    assert missing[["dataset", "network", "member", "fold"]].values.tolist() == [
        ["ckplus", "el", "nose", 1]]


def test_faithful_run_has_no_warning_and_no_table3(make_run):
    run = make_run(settings=PAPER_SETTINGS, datasets=("sfew",))
    written = write_tables(evaluate_run(load_run(run)), run)
    assert "NOT comparable" not in written["table1.md"].read_text()
    assert "table3.csv" not in written and not (run / "tables" / "table3.csv").exists()
