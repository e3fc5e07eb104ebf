"""report.md: settings, banners, Table I beside the paper, missing models, working links."""
import re

import pytest

from results.report import build_report
from run_builder import PAPER_SETTINGS, model_key

LINK = re.compile(r"\]\(([^)]+)\)")


@pytest.fixture(scope="module")
def report(shrunk_run):
    return build_report(shrunk_run)


def test_report_is_in_the_run_dir_and_every_link_resolves(report, shrunk_run):
    assert report == shrunk_run / "report.md"
    links = LINK.findall(report.read_text())
    assert len(links) > 50
    for link in links:
        assert not link.startswith("/"), link                  # relative links only
        assert (shrunk_run / link).is_file(), link
    linked = set(links)
    for needed in ("tables/table1.csv", "tables/table1.md", "tables/table3.md",
                   "confusion/ckplus_el.png", "confusion/ckplus_el-mouth.csv",
                   "figures/ckplus_curves.png", "figures/sfew_accuracy.png", "config.yaml"):
        assert needed in linked


def test_report_states_settings_data_sets_and_banners(report):
    text = report.read_text()
    assert "**SYNTHETIC DATA**" in text and "**SHRUNK RUN" in text
    assert text.index("SHRUNK RUN") < text.index("## Table I")
    for row in ("| image_size | 32 |", "| epochs_scale | 0.01 |", "| seed | 7 |", "| device | cpu |",
                "| executor | inline |", "| detector | none |", "| annotator | dlib-ert68 |"):
        assert row in text
    assert "| CK+ (`ckplus`) | kfold | 3 | 12 | anger, contempt, happiness, surprise |" in text
    assert "60 of 60 planned models have usable predictions." in text
    assert "| paper | 82.56 | 95.87 | 93.29 | 93.96 | 91.86 | 95.16 | 93.28 | 97.31 |" in text
    assert "| CK+ | 56.11 | 97.31 | 96.80 [22] | 11 | 1.65 |" in text       # Table II
    assert "### SFEW -> CK+" in text and "(contempt 3)" in text


def test_missing_models_and_gaps_are_stated(make_run):
    run = make_run(datasets=("ckplus",), drop_models={model_key("ckplus", "el", "nose", 1)},
                   drop_rows={model_key("ckplus", "baseline", "m2", 0): ["ck00"]})
    text = build_report(run).read_text()
    assert "44 of 45 planned models have usable predictions." in text
    assert "| ckplus | el | nose | finetune | 1 | no predictions.parquet |" in text
    assert "| ckplus | baseline | 0 | ckplus | m2 | 1 | 3 |" in text
    assert "EL: mean over 2 of 3 folds; missing folds 1" in text


def test_rebuild_is_idempotent_and_leaves_no_temp_files(make_run):
    run = make_run(datasets=("ckplus",))
    build_report(run)
    first = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    build_report(run)
    second = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    assert first.keys() == second.keys()
    changed = [str(p) for p in first if first[p] != second[p]]
    assert changed == []
    assert not [p for p in first if p.name.endswith(".tmp")]


def test_faithful_run_has_no_banner_and_skips_table3(make_run):
    run = make_run(settings=PAPER_SETTINGS, datasets=("sfew",), histories=False)
    text = build_report(run).read_text()
    assert "SHRUNK RUN" not in text and "SYNTHETIC DATA" not in text and "NOT comparable" not in text
    assert "Table III is skipped" in text
    assert "No training curves" in text
