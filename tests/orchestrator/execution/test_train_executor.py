"""The `train` executor on a real local Ray: packs split over Train workers write the same bytes as
one worker each and as the inline executor; a worker killed mid-pack resumes from the Trainer's
checkpoint and the outputs equal an uninterrupted run's."""
from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from partfer.data_prep.prepared import load_prepared
from partfer.orchestrator.config import load_config
from partfer.orchestrator.execution.executors import run_inline
from partfer.orchestrator.execution.plan import build_plan
from partfer.orchestrator.execution.progress import Progress
from partfer.orchestrator.execution.train_executor import TrainSettings, group_chains, run_train

# The inline runs use one thread, as each Train worker does: reduction order, hence bits, follows it
pytestmark = pytest.mark.usefixtures("one_thread")

# Baseline only, one member, LOSO over the fixture's 4 subjects: 4 models, 2 packs of 2
SMALL = {"image_size": 32, "networks": ["baseline"], "members": 1, "train.twin_selection": None,
         "train.steps_per_epoch": None,
         "train.checkpoint_seconds": 0, "train.checkpoint_every": 2}


def _plan(prepared_dir: str, storage: Path, epochs: int):
    cfg = load_config("demo", dict(SMALL, **{"datasets.jaffe.epochs": {
        "baseline": epochs, "landmark": 2, "head": 2, "finetune": 2}}))
    plan = build_plan(cfg, {"jaffe": load_prepared(prepared_dir)}, str(storage), "cpu", "t", pack_size=2)
    assert [len(c[0].models) for c in plan.chains] == [2, 2]
    return plan


def _outputs(plan) -> dict[str, object]:
    out = {}
    for chain in plan.chains:
        for job in chain:
            for m in job.models:
                out[f"{m.key}/ckpt"] = torch.load(f"{m.out_dir}/checkpoint.pt", weights_only=True)
                out[f"{m.key}/pred"] = pq.read_table(f"{m.out_dir}/predictions.parquet").to_pandas()
                out[f"{m.key}/history"] = Path(m.out_dir, "history.csv").read_text()
    return out


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for key in a:
        if key.endswith("/ckpt"):
            for name in a[key]:
                assert torch.equal(a[key][name], b[key][name]), f"{key} {name}"
        elif key.endswith("/pred"):
            assert [list(p) for p in a[key]["probs"]] == [list(p) for p in b[key]["probs"]], key
        else:
            assert a[key] == b[key], key


def _settings(workers: int, storage: Path) -> TrainSettings:
    return TrainSettings(workers=workers, cpus_per_worker=1, gpus_per_worker=0, max_failures=1, storage=str(storage))


@pytest.mark.slow
def test_two_workers_train_what_one_worker_each_does(shared_ray, tiny_prepared, tmp_path):
    """Tolerance zero: every weight, probability and history line bit-identical (CPU)."""
    one, two, inline = (_plan(tiny_prepared, tmp_path / n, 3) for n in ("one", "two", "inline"))
    assert [len(g) for g in group_chains(two.chains, 2)] == [2]          # one Trainer run, two workers
    assert [len(g) for g in group_chains(one.chains, 1)] == [1, 1]       # two runs of one worker
    quiet = io.StringIO()
    r1 = run_train(one.chains, Progress(0, 0, 2, stream=quiet), _settings(1, tmp_path / "one"))
    r2 = run_train(two.chains, Progress(0, 0, 2, stream=quiet), _settings(2, tmp_path / "two"))
    run_inline(inline.chains, Progress(0, 0, 2, stream=quiet), threads=1)  # a Train worker's one thread
    assert sorted(r.trained for r in r1) == sorted(r.trained for r in r2) == [2, 2]
    _assert_identical(_outputs(one), _outputs(two))
    _assert_identical(_outputs(one), _outputs(inline))
    assert not list((tmp_path / "two" / "train_runs").iterdir()), "a finished run's checkpoints were kept"


def _train_workers() -> list:
    import ray  # noqa: F401  (first: it puts its bundled psutil on sys.path)
    import psutil
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _registered_checkpoint(storage: Path) -> bool:
    """A checkpoint the Trainer's controller has registered (uploaded is not enough: one the
    workers were still reporting when killed is not resumed from)."""
    for snapshot in (storage / "train_runs").glob("*/checkpoint_manager_snapshot.json"):
        try:
            if "checkpoint_" in snapshot.read_text():
                return True
        except OSError:
            pass
    return False


def _train_and_kill_a_worker(plan, storage: Path, max_failures: int, log: io.StringIO) -> dict:
    """run_train in a thread; one Train worker killed once the run has a registered checkpoint."""
    outcome: dict = {}

    def train():
        try:
            outcome["results"] = run_train(plan.chains, Progress(0, 0, 2, stream=log), TrainSettings(
                workers=2, cpus_per_worker=1, gpus_per_worker=0, max_failures=max_failures, storage=str(storage)))
        except BaseException as exc:      # noqa: BLE001 - the caller asserts on it
            outcome["error"] = exc

    thread = threading.Thread(target=train)
    thread.start()
    victim, deadline = None, time.time() + 600
    while victim is None and thread.is_alive() and time.time() < deadline:
        if _registered_checkpoint(storage):
            workers = _train_workers()
            if workers:
                victim = workers[0]
                victim.kill()
        time.sleep(0.1)
    thread.join(timeout=900)
    assert victim is not None, "no worker to kill while a checkpoint existed"
    return outcome


@pytest.mark.slow
def test_killed_worker_resumes_from_the_trainer_checkpoint(shared_ray, tiny_prepared, tmp_path):
    epochs = 16
    killed, whole = _plan(tiny_prepared, tmp_path / "killed", epochs), _plan(tiny_prepared, tmp_path / "whole", epochs)
    log = io.StringIO()
    outcome = _train_and_kill_a_worker(killed, tmp_path / "killed", 1, log)
    assert "error" not in outcome, repr(outcome.get("error"))
    assert "resumed from its checkpoint of epoch" in log.getvalue(), log.getvalue()[-2000:]
    run_inline(whole.chains, Progress(0, 0, 2, stream=io.StringIO()), threads=1)
    _assert_identical(_outputs(killed), _outputs(whole))


@pytest.mark.slow
def test_a_failed_run_resumes_when_the_plan_runs_again(shared_ray, tiny_prepared, tmp_path):
    """No restarts left: the run fails; running the plan again (a new driver would) reuses the
    Trainer run's storage path and name, and so its checkpoint."""
    epochs = 12
    failed, whole = _plan(tiny_prepared, tmp_path / "failed", epochs), _plan(tiny_prepared, tmp_path / "whole", epochs)
    outcome = _train_and_kill_a_worker(failed, tmp_path / "failed", 0, io.StringIO())
    assert "error" in outcome
    log = io.StringIO()
    again = _plan(tiny_prepared, tmp_path / "failed", epochs)
    run_train(again.chains, Progress(0, 0, 2, stream=log), _settings(2, tmp_path / "failed"))
    assert "resumed from its checkpoint of epoch" in log.getvalue(), log.getvalue()[-2000:]
    run_inline(whole.chains, Progress(0, 0, 2, stream=io.StringIO()), threads=1)
    _assert_identical(_outputs(again), _outputs(whole))


def test_settings_take_the_configured_workers_or_the_planners(tiny_prepared, tmp_path):
    from types import SimpleNamespace

    from partfer.orchestrator.execution.train_executor import settings_for
    plan = _plan(tiny_prepared, tmp_path, 3)
    two_cpus = SimpleNamespace(gpus=0.0, cpus=2.0)
    cfg = load_config("demo", dict(SMALL, **{"train.workers_per_run": 2, "train.max_retries": 3}))
    fixed = settings_for(cfg, plan.chains, str(tmp_path), "cpu", two_cpus)
    assert (fixed.workers, fixed.max_failures, fixed.gpus_per_worker) == (2, 3, 1.0)
    planned = settings_for(load_config("demo", SMALL), plan.chains, str(tmp_path), "cpu", two_cpus)
    assert planned.workers in (1, 2)                 # never more workers than the cluster runs at once
    one_cpu = settings_for(load_config("demo", SMALL), plan.chains, str(tmp_path), "cpu",
                           SimpleNamespace(gpus=0.0, cpus=1.0))
    assert one_cpu.workers == 1
