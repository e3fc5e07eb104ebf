"""Networks that did not learn are flagged, on constructed run files: a classification stage that
ended near chance, a landmark stage no better than the mean shape; and only those."""
from __future__ import annotations

import csv

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from partfer.results.landmarks import load_landmark_study, summary_frame
from partfer.results.learning import flag_lines, not_learned
from partfer.results.load import load_run
from partfer.results.report import build_report
from run_builder import build_run


def _store(run):
    return run.parent.parent


def _write_history(run, record, stage: str, accs: list[float]) -> None:
    path = _store(run) / record.stage_dirs.get(stage, record.dir) / "history.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["epoch,train_loss,train_acc,val_loss,val_acc,lr,stopped"]
    rows += [f"{e + 1},1.0,{a},1.0,0.5,0.01,False" for e, a in enumerate(accs)]
    path.write_text("\n".join(rows) + "\n")


def _exact_landmarks(run, record, stage: str) -> None:
    """That stage's points made exact: error 0, far below the mean shape's."""
    path = _store(run) / record.stage_dirs[stage] / "landmarks.parquet"
    table = pq.read_table(path)
    pq.write_table(table.set_column(table.column_names.index("pred"), "pred", table.column("truth")), path)


@pytest.fixture
def run(tmp_path):
    run = build_run(tmp_path, datasets=("ckplus",), landmarks=True, histories=False)
    results = load_run(run)
    for record in results.plan.models:
        stages = ("baseline",) if record.network == "baseline" else ("head", "finetune")
        for stage in stages:
            _write_history(run, record, stage, [0.3, 0.9])       # 4 classes: chance 25 %
    return run


def _flags(run):
    results = load_run(run)
    return {(f.dataset, f.network): f.reason for f in not_learned(results, load_landmark_study(results))}


def test_landmark_stages_no_better_than_the_mean_shape_are_flagged(run):
    frame = summary_frame(load_landmark_study(load_run(run)))
    # the constructed points miss by 0.01-0.03 while the faces differ by ~0.01: worse than the mean shape
    assert (frame["mae_before"] > frame["mae_mean_shape"]).all()
    assert np.allclose(frame["px_mean_shape"], 160 * frame["mae_mean_shape"])
    flags = _flags(run)
    assert set(flags) == {("ckplus", "ftl"), ("ckplus", "el")}
    assert "landmark stage (face) localises no better than the mean shape" in flags[("ckplus", "ftl")]


def test_exact_landmarks_are_not_flagged(run):
    results = load_run(run)
    for record in results.plan.models:
        if record.network != "baseline":
            _exact_landmarks(run, record, "landmark")
    assert _flags(run) == {}


def test_a_stage_ending_near_chance_is_flagged_with_its_accuracy(run):
    results = load_run(run)
    for record in results.plan.models:
        if record.network != "baseline":
            _exact_landmarks(run, record, "landmark")
        if record.network == "el":
            _write_history(run, record, "head", [0.5, 0.27])   # within 5 points of chance (25 %)
    flags = _flags(run)
    assert set(flags) == {("ckplus", "el")}
    assert "head stage ended at 27.0 % training accuracy (chance 25.0 %)" in flags[("ckplus", "el")]
    lines = flag_lines(not_learned(results, load_landmark_study(results)), "ckplus")
    assert len(lines) == 1 and lines[0].startswith("⚠ EL did not learn")


def test_the_report_marks_table_i_and_says_why(run):
    results = load_run(run)
    for record in results.plan.models:
        if record.network == "el":
            _exact_landmarks(run, record, "landmark")
    report = build_report(run).read_text()
    with open(run / "tables" / "table1.csv") as fh:
        row = next(csv.DictReader(fh))
    assert row["not_learned"] == "FTL"
    assert "⚠ FTL did not learn: its landmark stage (face) localises no better than the mean shape" in report
    assert "EL did not learn" not in report
    assert "mean shape (px)" in report
