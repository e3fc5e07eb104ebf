"""All three of the paper's data sets (generated) through the command line: Table I for each,
Table III (SFEW models tested on CK+ with contempt dropped, and on JAFFE), Table II, complexity,
the landmark before/after study, Grad-CAM, and one HTML report."""
from __future__ import annotations

import csv
import json

import pytest
from cli_runner import REPO, report_path
from cli_runner import run_all as _run

CONFIG = REPO / "tests" / "configs" / "tiny_paper.yaml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    done = _run("--config", str(CONFIG), "--out", str(out), cwd=out)
    assert done.returncode == 0, done.stderr[-4000:]
    return report_path(done.stdout).parent


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
@pytest.mark.ray
def test_every_data_set_has_its_table1_row(run_dir):
    rows = {r["dataset"]: r for r in _rows(run_dir / "tables" / "table1.csv")}
    assert set(rows) == {"ckplus", "jaffe", "sfew"}
    for row in rows.values():
        for net in ("Baseline", "FTL", "Mouth", "Eyes", "EL"):
            assert 0 <= float(row[net]) <= 100
    plan = json.loads((run_dir / "plan.json").read_text())
    assert "contempt" in plan["datasets"]["ckplus"]["classes"]
    assert len(plan["datasets"]["ckplus"]["classes"]) == 8
    assert plan["datasets"]["sfew"]["folds"] == [0]
    assert sorted(plan["datasets"]["sfew"]["eval_on"]) == ["ckplus", "jaffe"]


@pytest.mark.slow
@pytest.mark.ray
def test_cross_data_set_table3_drops_contempt(run_dir):
    sfew_models = [m for m in json.loads((run_dir / "plan.json").read_text())["models"]
                   if m["dataset"] == "sfew"]
    assert sfew_models and all(len(m["extra_predictions"]) == 2 for m in sfew_models)
    text = (run_dir / "tables" / "table3.md").read_text()
    assert "CK+" in text and "JAFFE" in text and "contempt" in text
    assert (run_dir / "tables" / "table3.csv").is_file()


@pytest.mark.slow
@pytest.mark.ray
def test_report_has_every_table_and_figure(run_dir):
    for name in ("table2.csv", "complexity.csv", "landmarks.csv"):
        assert (run_dir / "tables" / name).stat().st_size > 0, name
    for ds in ("ckplus", "jaffe", "sfew"):
        assert (run_dir / "figures" / f"{ds}_gradcam.png").stat().st_size > 1000
        assert (run_dir / "confusion" / f"{ds}_el.png").is_file()
    html = (run_dir / "report.html").read_text()
    for heading in ("Table I", "Table II", "Table III", "Grad-CAM", "landmark"):
        assert heading.lower() in html.lower(), heading
    assert "SHRUNK" in html.upper()


@pytest.mark.slow
def test_a_missing_data_set_root_fails_before_any_work(tmp_path):
    done = _run("--config", str(CONFIG), "--out", str(tmp_path), "--datasets", f"jaffe={tmp_path / 'nope'}",
                cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "does not exist" in done.stderr
    assert not (tmp_path / "models").exists()
