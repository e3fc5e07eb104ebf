"""Table I / Table III files: exact columns and values, paper rows, warnings, missing folds."""
import pandas as pd
import pytest

from partfer.results.complexity import load_complexity
from partfer.results.evaluate import evaluate_run
from partfer.results.load import load_run
from partfer.results.tables import table1_frame, write_tables
from run_builder import PAPER_SETTINGS, model_key


@pytest.fixture(scope="module")
def written(shrunk_run):
    ev = evaluate_run(load_run(shrunk_run))
    return write_tables(ev, shrunk_run, load_complexity(shrunk_run))


def test_table1_csv_columns_and_values(written):
    assert written["table1.csv"].read_text() == (
        "dataset,Baseline,FTL,Eyebrows,Eyes,Nose,Mouth,Jaw,EL,selection,test_images,paper_test_images,not_learned\n"
        # CK+ means over 3 folds, e.g. EL (75 + 60 + 33.33) / 3, Eyebrows (50 + 60 + 100) / 3;
        # the selection of plans written before it was recorded; test images scored, the paper's; no stage near chance
        "ckplus,50.00,100.00,70.00,70.00,70.00,30.00,30.00,56.11,heldout_subjects,12,1308,\n"
        "sfew,16.67,50.00,50.00,50.00,50.00,50.00,50.00,66.67,heldout_subjects,6,436,\n")


def test_table3_csv_has_ours_paper_and_difference_rows(written):
    lines = written["table3.csv"].read_text().splitlines()
    assert lines[0] == ("train_dataset,test_dataset,train,test,source,Baseline,FTL,Eyebrows,Eyes,"
                        "Nose,Mouth,Jaw,EL,n_dropped,dropped")
    assert lines[1:] == [
        "sfew,sfew,SFEW Train,SFEW Valid,ours,16.67,50.00,50.00,50.00,50.00,50.00,50.00,66.67,0,",
        "sfew,sfew,SFEW Train,SFEW Valid,paper,36.47,42.20,40.60,41.30,36.70,41.74,40.82,44.50,,",
        "sfew,sfew,SFEW Train,SFEW Valid,difference,-19.80,7.80,9.40,8.70,13.30,8.26,9.18,22.17,,",
        # CK+ without its 3 contempt samples (SFEW has no contempt): 9 scored.
        "sfew,ckplus,SFEW Train,CK+,ours,100.00,0.00,44.44,44.44,44.44,55.56,55.56,66.67,3,contempt 3",
        "sfew,ckplus,SFEW Train,CK+,paper,32.85,41.31,33.33,35.49,22.97,37.72,32.62,47.53,,",
        "sfew,ckplus,SFEW Train,CK+,difference,67.15,-41.31,11.11,8.95,21.47,17.84,22.94,19.14,,",
        "sfew,jaffe,SFEW Train,JAFFE,ours,83.33,0.00,50.00,50.00,50.00,66.67,66.67,66.67,1,fear 1",
        "sfew,jaffe,SFEW Train,JAFFE,paper,16.90,26.29,22.54,24.88,18.78,24.88,21.60,30.51,,",
        "sfew,jaffe,SFEW Train,JAFFE,difference,66.43,-26.29,27.46,25.12,31.22,41.79,45.07,36.16,,",
    ]
    md = written["table3.md"].read_text()
    assert "## SFEW Train -> SFEW Valid" in md and "## SFEW Train -> JAFFE" in md
    assert "dropped 3 test samples whose class the model was not trained on (contempt 3)" in md
    assert "| paper | 32.85 | 41.31 | 33.33 | 35.49 | 22.97 | 37.72 | 32.62 | 47.53 |" in md
    assert "| difference | +66.43 | -26.29 | +27.46 | +25.12 | +31.22 | +41.79 | +45.07 | +36.16 |" in md


def _ensemble_params(n_classes: int) -> int:
    # 5 x (extractor 295,440 + two 128-unit dense layers + the C-way output layer)
    return 5 * (295440 + 2 * (128 * 128 + 128) + 129 * n_classes)


def test_table2_has_our_accuracy_and_parameters_beside_the_benchmark(written):
    frame = pd.read_csv(written["table2.csv"]).set_index("dataset")
    ck = frame.loc["ckplus"]
    assert ck["el_ours"] == pytest.approx(56.11) and ck["el_paper"] == 97.31
    assert ck["el_difference"] == pytest.approx(-41.20) and ck["el_folds"] == "3/3"
    assert ck["benchmark"] == 96.80 and ck["benchmark_references"] == "[22]"
    assert ck["el_ours_minus_benchmark"] == pytest.approx(-40.69)
    assert ck["el_params_ours"] == _ensemble_params(4) == 1644900
    assert ck["el_params_paper_millions"] == 1.65 and ck["benchmark_params_millions"] == 11
    assert frame.loc["sfew", "el_params_ours"] == _ensemble_params(3)
    md = written["table2.md"].read_text()
    assert "| CK+ | 56.11 | 97.31 | -41.20 | 3/3 | 96.80 [22] | -40.69 | 1.645 | 1.65 | 11 |" in md
    assert "NOT comparable" in md


def test_table2_without_complexity_says_why_parameters_are_empty(make_run):
    run = make_run(datasets=("sfew",), cross=())
    ev = evaluate_run(load_run(run))
    (run / "analysis").mkdir()
    (run / "analysis" / "complexity.json").write_text('{"by_n_classes": {}}')
    written = write_tables(ev, run, load_complexity(run))
    md = written["table2.md"].read_text()
    assert ("the run left no usable complexity report (`complexity.json`: unusable (lacks "
            "key(s) image_size") in md
    assert pd.read_csv(written["table2.csv"])["el_params_ours"].isna().all()
    assert "complexity.csv" not in written


def test_complexity_table_sets_the_counts_beside_the_papers(written, complexity_report):
    frame = pd.read_csv(written["complexity.csv"], dtype={"n_classes": str, "ours_exact": str})
    row = lambda q, c, unit: frame[(frame["quantity"] == q) & (frame["n_classes"].fillna("") == c)  # noqa: E731
                                   & (frame["unit"] == unit)].iloc[0]
    assert row("extractor parameters", "", "M")["ours_exact"] == "295440"
    assert row("extractor parameters", "", "M")["paper"] == 0.29
    sub8 = row("sub-network parameters", "8", "M")
    assert sub8["ours_exact"] == "329496" and sub8["paper"] == 0.33
    assert row("ensemble parameters", "7", "M")["ours_exact"] == "1646835"
    assert pd.isna(row("ensemble parameters", "7", "M")["paper"])       # paper: worst case only
    flops = row("sub-network FLOPs", "8", "GFLOPs")
    assert flops["ours"] == pytest.approx(complexity_report["by_n_classes"]["8"]["subnetwork_gflops"],
                                          abs=1e-4)
    assert flops["paper"] == 0.555
    assert row("ensemble storage", "8", "MB")["paper"] == 31.5
    assert row("sub-network storage", "8", "MB")["ours"] == pytest.approx(329496 * 4 / 1e6, abs=1e-3)
    md = written["complexity.md"].read_text()
    assert "| sub-network storage | 8 | MB | 1.318 |  | 6.3 |" in md
    assert "counts the five models twice" in md and "inconsistent with its own architecture" in md


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
