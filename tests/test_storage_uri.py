"""A store given as a URI, end to end through the command line: `file://` takes the code path of
`s3://` and `gs://` (pyarrow's FileSystem.from_uri). Each "node" is its own cache directory
(PARTFER_CACHE): what one node publishes, another finds at the URI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cli_runner import REPO, child_env, report_path
from cli_runner import run_all as _run

TINY = REPO / "tests" / "configs" / "tiny.yaml"
# held-out subjects choose the kept epochs, as in the sweep at the end (a sweep never selects on
# the test fold), so the sweep finds the run's earlier stages under the same keys
SMALL = ["--config", str(TINY), "--set", "members=1", "--set", "parts=[mouth]", "--networks", "el",
         "--epochs-scale", "0.25", "--executor", "inline", "--set", "train.selection=heldout_subjects"]


def _partfer(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "partfer", *args], cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.ray
def test_a_run_at_a_uri_is_published_and_found_again_from_another_node(tmp_path, monkeypatch):
    store = tmp_path / "bucket" / "store"
    uri = store.as_uri()
    monkeypatch.setenv("PARTFER_CACHE", str(tmp_path / "node-a"))
    first = _run(*SMALL, "--out", uri, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    local = report_path(first.stdout)
    assert local.is_relative_to(tmp_path / "node-a")
    run_id = local.parent.name
    assert f"{uri}/runs/{run_id}/report.html" in first.stdout.splitlines()
    published = store / "runs" / run_id
    assert (published / "report.html").read_text() == local.read_text()
    assert json.loads((published / "plan.json").read_text())["settings"]["status"] == "finished"
    assert (published / "tables" / "table1.csv").is_file()
    assert len(list(store.glob("models/jaffe/*/*/*/meta.json"))) == 3 * 3      # 3 folds x 3 stages
    assert len(list(store.glob("prepared/jaffe-*/_SUCCESS"))) == 1
    assert not list(store.glob("packs/*/*")), "resumable state left behind"
    assert not [p for p in store.rglob("*") if ".tmp-" in p.name or ".partfer-probe" in p.name]

    # the same command on a node with an empty cache: data reused, every stage skipped
    stamps = {p: p.stat().st_mtime_ns for p in store.glob("models/**/meta.json")}
    monkeypatch.setenv("PARTFER_CACHE", str(tmp_path / "node-b"))
    again = _run(*SMALL, "--out", uri, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "9 model-stages already finished in the store: skipped" in again.stderr
    assert "0 rejected (reused)" in again.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items()), "a finished stage was retrained"
    other = report_path(again.stdout)
    assert other.is_relative_to(tmp_path / "node-b") and other.parent.name == run_id
    table = "tables/table1.csv"
    assert (other.parent / table).read_text() == (local.parent / table).read_text()

    # a third node rebuilds the report from the URI alone, and a sweep reuses the store's stages
    monkeypatch.setenv("PARTFER_CACHE", str(tmp_path / "node-c"))
    (published / "report.md").unlink()
    report = _partfer("report", f"{uri}/runs/{run_id}", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-4000:]
    assert (published / "report.md").read_text() == other.with_name("report.md").read_text()     # the latest run's report
    sweep = _partfer("tune", "--config", str(TINY), "--dataset", "jaffe", "--network", "el", "--stage", "head",
                     "--samples", "2", "--scheduler", "fifo", "--set", "members=1", "--set", "parts=[mouth]",
                     "--set", "epochs_scale=0.25", "--out", uri, cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-4000:]
    assert "earlier stages (landmark) already finished in the store: reused" in sweep.stdout
    best = next(store.glob("tune/jaffe-el-head-*/best.yaml")).read_text()
    assert f"storage: {uri}" in best


@pytest.mark.slow
def test_an_unusable_store_uri_stops_the_run_in_one_line(tmp_path):
    done = _run("--config", str(TINY), "--out", "nosuchscheme://bucket/x", cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "partfer: error: storage nosuchscheme://bucket/x: cannot open its filesystem "
        "(Unrecognized filesystem type in URI: nosuchscheme://bucket/)")
