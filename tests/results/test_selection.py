"""Table I under the run's main selection beside its no-peeking twin, and the test-set sizes."""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from partfer.orchestrator.records import PREDICTION_SCHEMA, RunPlan
from partfer.results.evaluate import evaluate_run
from partfer.results.load import PlanError, load_run
from partfer.results.report import build_report
from partfer.results.selection import denominator_line, denominator_mismatches, selection_frame
from tests.results.run_builder import PAPER_SETTINGS, build_run


def _with_twin(run_dir, el_wrong: bool = True):
    """The run's models again under selection `last`: the same predictions, except that the
    twin's EL parts always put their top probability on a wrong class."""
    plan = RunPlan.from_json((run_dir / "plan.json").read_text())
    storage = run_dir.parent.parent
    twins = []
    for r in plan.models:
        twin = dataclasses.replace(r, key=r.key + "-t", dir=r.dir + "-t", selection="last", extra_predictions=[])
        shutil.copytree(storage / r.dir, storage / twin.dir)
        path = storage / twin.dir / "predictions.parquet"
        if el_wrong and r.network == "el":
            table = pq.read_table(path).to_pydict()
            classes = plan.datasets[r.dataset].classes
            for i, label in enumerate(table["label"]):
                wrong = (classes.index(label) + 1) % len(classes)
                probs = np.full(len(classes), 0.02, dtype=np.float32)
                probs[wrong] = 1 - 0.02 * (len(classes) - 1)
                table["probs"][i] = probs.tolist()
            pq.write_table(pa.table(table, schema=PREDICTION_SCHEMA), path)
        twins.append(twin)
    models = [dataclasses.replace(r, selection="evaluated_fold") for r in plan.models] + twins
    settings = dict(plan.settings, selection="evaluated_fold", twin_selection="last")
    plan = dataclasses.replace(plan, models=models, settings=settings)
    (run_dir / "plan.json").write_text(plan.to_json())
    return run_dir


def test_each_selection_is_read_on_its_own(tmp_path):
    run_dir = _with_twin(build_run(tmp_path, datasets=("ckplus",), cross=()))
    main, twin = load_run(run_dir), load_run(run_dir, "last")
    assert main.selection == "evaluated_fold" and twin.selection == "last"
    assert len(main.plan.models) == len(twin.plan.models) == 45
    assert {r.selection for r in main.plan.models} == {"evaluated_fold"}
    assert not set(main.predictions.index) - set(range(len(main.predictions)))
    with pytest.raises(PlanError, match="no models trained under selection 'heldout_subjects'"):
        load_run(run_dir, "heldout_subjects")


def test_side_by_side_rows_and_their_difference(tmp_path):
    run_dir = _with_twin(build_run(tmp_path, datasets=("ckplus",), cross=()))
    main, twin = evaluate_run(load_run(run_dir)), evaluate_run(load_run(run_dir, "last"))
    frame = selection_frame(main, twin).set_index("row")
    ours, honest, diff = (frame.loc[name] for name in ("evaluated_fold", "last", "difference"))
    assert honest["EL"] == 0.0 and honest["Mouth"] == 0.0
    assert diff["EL"] == pytest.approx(ours["EL"]) and ours["EL"] > 0
    assert ours["Baseline"] == honest["Baseline"] and diff["Baseline"] == 0.0
    assert frame.loc["paper"]["EL"] == 97.31
    report = build_report(run_dir).read_text()
    assert "## The authors' selection beside a no-peeking one" in report
    assert "it sees the test images" in report
    written = pd.read_csv(run_dir / "tables" / "table1_selection.csv")
    assert set(written["row"]) == {"paper", "evaluated_fold", "last", "difference"}


def test_a_run_without_a_twin_has_no_side_by_side_section(tmp_path):
    run_dir = build_run(tmp_path, datasets=("ckplus",), cross=())
    report = build_report(run_dir).read_text()
    assert "beside a no-peeking one" not in report
    assert not (run_dir / "tables" / "table1_selection.csv").exists()


def test_test_images_scored_beside_the_papers(tmp_path):
    run_dir = build_run(tmp_path, datasets=("ckplus", "sfew"), settings=PAPER_SETTINGS)
    ev = evaluate_run(load_run(run_dir))
    line = denominator_line(ev, "ckplus", "ckplus")
    assert line.startswith("Test images scored: 12") and "(paper: 1,308)" in line
    cross = denominator_line(ev, "sfew", "ckplus")
    assert "Test images scored: 9 of 9 in the protocol" in cross and "(paper: 1,254)" in cross   # contempt dropped
    mismatches = denominator_mismatches(ev)
    assert any(m.startswith("CK+: 12 test images scored, the paper's 1,308") for m in mismatches)
    report = build_report(run_dir).read_text()
    assert "TEST SETS DIFFER FROM THE PAPER'S" in report
    table1 = pd.read_csv(run_dir / "tables" / "table1.csv").set_index("dataset")
    assert table1.loc["ckplus", "test_images"] == 12 and table1.loc["ckplus", "paper_test_images"] == 1308
