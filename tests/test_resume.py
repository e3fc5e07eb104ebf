"""Interrupted and failing runs: a killed driver resumes where it stopped and ends with the same
tables as an uninterrupted run; a killed worker's pack is retried by Ray and resumes; two runs with
different settings share a store without touching each other's outputs."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from cli_runner import REPO, report_path
from cli_runner import run_all as _run
from cli_runner import start_run_all as _start

pytestmark = [pytest.mark.slow, pytest.mark.ray]       # each run starts its own local Ray

TINY = REPO / "tests" / "configs" / "tiny.yaml"
SMALL = ["--config", str(TINY), "--set", "members=1", "--set", "parts=[mouth]",
         "--set", "train.checkpoint_every=1", "--set", "train.checkpoint_seconds=0"]
INLINE = SMALL + ["--executor", "inline"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted inline run of SMALL: (its store, its report.html, the finished process),
    the reference of the resume test and the first run of the shared-store test."""
    cwd = tmp_path_factory.mktemp("uninterrupted")
    store = cwd / "store"
    done = _run(*INLINE, "--out", str(store), cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return store, report_path(done.stdout), done


def _wait_for(predicate, proc, timeout=600):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def _pack_workers_of(pid: int) -> list:
    """The Ray workers running packs among the descendants of process `pid`."""
    import ray  # noqa: F401  (first: it puts its bundled psutil on sys.path)
    import psutil
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if " ".join(child.cmdline()).startswith("ray::jaffe-"):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stage_dirs(report: Path) -> list[str]:
    """The run's model-stage directories, relative to its store (from its plan.json)."""
    plan = json.loads((report.parent / "plan.json").read_text())
    return sorted({d for model in plan["models"] for d in model["stage_dirs"].values()})


def _assert_same_values(a, b, where: str) -> None:
    """Checkpoint contents equal exactly: tensors by torch.equal, containers element by element."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_same_values(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_values(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _assert_identical_outputs(store_a: Path, report_a: Path, store_b: Path, report_b: Path) -> None:
    """Two CPU runs of the same plan wrote bit-identical predictions and checkpoints."""
    dirs = _stage_dirs(report_a)
    assert dirs and dirs == _stage_dirs(report_b)
    n_predictions = 0
    for rel in dirs:
        a, b = store_a / rel, store_b / rel
        names = sorted(p.name for p in a.glob("*.parquet"))
        assert names == sorted(p.name for p in b.glob("*.parquet")), rel
        for name in names:
            assert pq.read_table(a / name).equals(pq.read_table(b / name), check_metadata=True), f"{rel}/{name}"
        n_predictions += len(names)
        _assert_same_values(torch.load(a / "checkpoint.pt", weights_only=True),
                            torch.load(b / "checkpoint.pt", weights_only=True), f"{rel}/checkpoint.pt")
    assert n_predictions >= len(dirs), "a stage wrote no predictions"


def test_killed_driver_resumes_and_matches_an_uninterrupted_run(uninterrupted, tmp_path):
    whole_store, whole_report, _ = uninterrupted
    store = tmp_path / "killed"
    proc = _start(*INLINE, "--out", str(store), cwd=tmp_path, log=tmp_path / "killed.log")
    models = store / "models"
    def mid_pack() -> bool:
        """A stage is finished and a LATER pack is mid-way: its resumable state is newer than any output."""
        done = [p.stat().st_mtime for p in models.glob("*/*/*/*/meta.json")]
        states = [p.stat().st_mtime for p in store.glob("packs/*/state.pt")]
        return bool(done) and bool(states) and max(states) > max(done)

    caught = _wait_for(mid_pack, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert caught, (tmp_path / "killed.log").read_text()[-3000:]
    finished_before = {p.parent for p in models.glob("*/*/*/*/meta.json")}
    stamps = {p: p.stat().st_mtime_ns for p in finished_before}

    again = _run(*INLINE, "--out", str(store), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already finished in the store: skipped" in again.stderr
    assert "resumed" in again.stderr                       # the interrupted pack went on from its state
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items()), "a finished stage was retrained"
    assert not any(store.glob("packs/*/state.pt")), "resumable state left behind"
    assert not list(store.rglob("*.tmp-*")), "a half-written file is visible"

    resumed = report_path(again.stdout)
    _assert_identical_outputs(whole_store, whole_report, store, resumed)
    assert (whole_report.parent / "tables" / "table1.csv").read_text() == \
        (resumed.parent / "tables" / "table1.csv").read_text()


def test_killed_worker_is_retried_and_the_run_completes(tmp_path):
    store = tmp_path / "store"
    log = tmp_path / "run.log"
    proc = _start(*SMALL, "--executor", "ray", "--set", "train.max_retries=2", "--out", str(store),
                  cwd=tmp_path, log=log)
    assert _wait_for(lambda: any(store.glob("packs/*/state.pt")), proc), log.read_text()[-3000:]
    # the Ray workers running packs show the task name in their process titles; kill all of THIS
    # run's (descendants of the driver this test started, whose private Ray spawned them), so the
    # one whose pack saved its state is among them; another run's workers are never touched
    victims = _pack_workers_of(proc.pid)
    assert victims, "no pack worker found"
    for worker in victims:
        worker.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=1200) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "will be retried" in text                       # Ray saw the worker die and retried
    assert "resumed" in text                               # and the pack went on from its saved epoch
    assert (store / "runs").is_dir() and list(store.glob("runs/*/report.md"))


def test_two_runs_in_one_store_keep_their_own_outputs(uninterrupted):
    store, first_report, _ = uninterrupted
    cwd = store.parent
    before = {p: _digest(p) for p in store.rglob("*") if p.is_file() and "runs" not in p.parts}
    # the second trains on the first's prepared data, named by a path relative to its cwd
    prepared = next((store / "prepared").glob("jaffe-*")).relative_to(cwd)
    second = _run(*INLINE, "--seed", "7", "--out", str(store), "--prepared", f"jaffe={prepared}", cwd=cwd)
    assert second.returncode == 0, second.stderr[-3000:]
    assert first_report.parent != report_path(second.stdout).parent
    assert all(_digest(p) == d for p, d in before.items()), "the second run changed the first's files"
    assert (first_report.parent / "tables" / "table1.csv").is_file()
