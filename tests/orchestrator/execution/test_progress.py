"""Watching a run: the ETA, -q/-v, per-epoch CSV and TensorBoard files, Ray's log de-duplication off."""
import csv
import io
from pathlib import Path

import pytest

from partfer.data_prep.prepared import load_prepared
from partfer.orchestrator.config import load_config
from partfer.orchestrator.training.epoch_metrics import (CSV_FILE, TENSORBOARD_DIR, EpochFiles, epoch_reporter,
                                                       write_fold_means)
from partfer.orchestrator.execution.executors import deliver, run_inline
from partfer.orchestrator.execution.plan import build_plan
from partfer.orchestrator.execution.pack_work import pack_work
from partfer.orchestrator.execution.progress import NORMAL, QUIET, VERBOSE, Progress
from partfer.orchestrator.training.jobs import PackResult, pack_name
from partfer.orchestrator.training.tb_events import append_scalars

TINY = {"image_size": 32, "train.steps_per_epoch": None, "networks": ["baseline"], "members": 2,
        "datasets.jaffe.epochs": {"baseline": 3, "landmark": 1, "head": 1, "finetune": 1}}


def _plan(prepared_dir, storage):
    cfg = load_config("demo", TINY)
    return build_plan(cfg, {"jaffe": load_prepared(prepared_dir)}, str(storage), "cpu", "t", pack_size=8)


def _scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Read back with TensorBoard's own reader, the one `tensorboard --logdir` uses."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(directory))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_event_files_read_back_by_tensorboard(tmp_path):
    append_scalars(tmp_path, 1, {"loss/train": 2.0, "loss/val": float("nan"), "accuracy/val": None})
    append_scalars(tmp_path, 2, {"loss/train": 1.5, "loss/val": 1.25})
    assert append_scalars(tmp_path, 3, {"loss/val": float("nan")}) is None
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1       # appended, not a file per call
    assert _scalars(tmp_path) == {"loss/train": [(1, 2.0), (2, 1.5)], "loss/val": [(2, 1.25)]}


@pytest.mark.slow
def test_a_training_run_writes_every_model_epoch_to_csv_and_tensorboard(tiny_prepared, tmp_path):
    plan = _plan(tiny_prepared, tmp_path / "store")
    run_dir = tmp_path / "run"
    stream = io.StringIO()
    progress = Progress(plan.n_model_stages, 0, sum(len(c) for c in plan.chains), stream=stream,
                        run_dir=run_dir, verbosity=VERBOSE)
    run_inline(plan.chains, progress)
    # a training shared by both selections (the demo's twin) writes each selection's model's epochs
    models = [key for chain in plan.chains for job in chain for m in job.models for key in m.keys]
    with open(run_dir / CSV_FILE) as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["key"], int(r["epoch"])) for r in rows} == {(key, e) for key in models for e in (1, 2, 3)}
    assert all(float(r["train_loss"]) > 0 and r["network"] == "baseline" for r in rows)
    boards = sorted(p.parent for p in (run_dir / TENSORBOARD_DIR).rglob("events.out.tfevents.*"))
    assert len(boards) == len(models)
    scalars = _scalars(boards[0])
    assert [step for step, _ in scalars["loss/train"]] == [1, 2, 3]
    # the watched figures say what they were computed on: the test fold under the authors' selection
    assert "/evaluated_fold/" in boards[0].as_posix()
    assert {"loss/train", "accuracy/train", "loss/test_fold", "accuracy/test_fold"} <= set(scalars)
    assert not any(tag.endswith("/val") for tag in scalars)
    # once training ends: one run per member and stage with the mean over folds of every epoch
    assert write_fold_means(run_dir) == len({(r["selection"], r["member"]) for r in rows})
    means = sorted((run_dir / TENSORBOARD_DIR).rglob("mean_over_folds/baseline"))
    assert len(means) == len({(r["selection"], r["member"]) for r in rows})
    member = means[0].parent.parent.name.split("-", 1)[1]
    selection = means[0].parent.parent.parent.name
    mine = [r for r in rows if r["member"] == member and r["selection"] == selection and r["epoch"] == "2"]
    expected = sum(float(r["train_loss"]) for r in mine) / len(mine)
    assert dict(_scalars(means[0])["loss/train"])[2] == pytest.approx(expected, rel=1e-5)
    lines = stream.getvalue().splitlines()
    epoch_lines = [line for line in lines if ": epoch " in line and "ETA" in line]
    assert len(epoch_lines) == 3 * sum(len(c) for c in plan.chains)           # -v: every epoch
    done = [line for line in lines if "done   jaffe" in line]
    assert done and "image-steps" in done[-1] and "ETA 0:00:00" in done[-1]


def test_eta_from_the_measured_rate(tiny_prepared, tmp_path):
    plan = _plan(tiny_prepared, tmp_path)
    jobs = [job for chain in plan.chains for job in chain]
    total = sum(pack_work(job).image_steps for job in jobs)
    progress = Progress(0, 0, len(jobs), stream=io.StringIO())
    assert progress.eta() == ""                         # no plan yet
    progress.plan(plan.chains)
    assert "ETA not yet measured" in progress.eta()
    job = jobs[0]
    progress.epoch(job, 1, {})                          # a third of the first pack's epochs
    done = pack_work(job).image_steps / 3
    assert progress.steps_done() == pytest.approx(done)
    start = progress._train_start
    # measured: `done` image-steps in 60 s -> the rest at that rate
    expected = round((total - done) / (done / 60))
    h, m, s = expected // 3600, expected // 60 % 60, expected % 60
    assert progress.eta(now=start + 60).endswith(f"ETA {h}:{m:02d}:{s:02d}")


def test_eta_weighs_each_stage_by_its_measured_cost(tiny_prepared, tmp_path):
    # A head stage (frozen extractor) costs a fraction of a landmark stage per image-step: the ETA
    # must not price the rest of the run at the first stage's rate.
    cfg = load_config("demo", {**TINY, "networks": ["ftl"]})
    plan = build_plan(cfg, {"jaffe": load_prepared(tiny_prepared)}, str(tmp_path), "cpu", "t", pack_size=8)
    jobs = [job for chain in plan.chains for job in chain]
    by_stage = {job.stage.stage: job for job in jobs}
    assert {"landmark", "head", "finetune"} <= set(by_stage)
    progress = Progress(0, 0, len(jobs), stream=io.StringIO())
    progress.plan(plan.chains)
    start = progress._train_start
    landmark, head = by_stage["landmark"], by_stage["head"]
    steps = {key: pack_work(job).image_steps for key, job in (("landmark", landmark), ("head", head))}
    # landmark pack done: 10 s of pack time; head pack done at a quarter of the landmark's cost
    progress.finished(landmark, PackResult("landmark", [], 0, [1], 10.0, steps["landmark"]))
    progress.finished(head, PackResult("head", [], 0, [1], 2.5 * steps["head"] / steps["landmark"], steps["head"]))
    cost = {"landmark": 10.0 / steps["landmark"], "head": 2.5 / steps["landmark"]}
    cost["finetune"] = (cost["landmark"] + cost["head"]) / 2          # not measured: the mean
    left = sum(pack_work(j).image_steps * cost[j.stage.stage] for j in jobs if j not in (landmark, head))
    done = steps["landmark"] * cost["landmark"] + steps["head"] * cost["head"]
    expected = round(left * 20 / done)                  # 20 s of wall time for the weighted work done
    h, m, s = expected // 3600, expected // 60 % 60, expected % 60
    assert progress.eta(now=start + 20).endswith(f"ETA {h}:{m:02d}:{s:02d}")


@pytest.mark.parametrize("level,shown", [(QUIET, {"error"}), (NORMAL, {"error", "note", "line"}),
                                         (VERBOSE, {"error", "note", "line", "epoch"})])
def test_verbosity(tiny_prepared, tmp_path, level, shown):
    job = _plan(tiny_prepared, tmp_path).chains[0][0]
    stream = io.StringIO()
    progress = Progress(0, 0, 1, stream=stream, verbosity=level)
    progress.error("an error")
    progress.note("a note")
    progress.pack_line(job, "a pack line")
    progress.epoch(job, 1, {job.models[0].key: {"train_loss": 1.0}})
    text = stream.getvalue()
    printed = {name for name, needle in (("error", "an error"), ("note", "a note"), ("line", "a pack line"),
                                         ("epoch", ": epoch 1/")) if needle in text}
    assert printed == shown


def test_reporter_sends_only_the_models_that_trained_in_the_epoch(tiny_prepared, tmp_path):
    job = _plan(tiny_prepared, tmp_path).chains[0][0]
    keys = [m.key for m in job.models]
    n = len(keys)
    sent = []
    report = epoch_reporter(job, lambda epoch, figures: sent.append((epoch, figures)))
    nan = float("nan")
    # model 1 stops in epoch 1; model 2 is not computed (nan: it stopped before a resume)
    report(1, {"train_loss": [1.0, 2.0, nan] + [3.0] * (n - 3), "train_acc": [0.5, 0.25, nan] + [0.0] * (n - 3),
               "val_loss": [nan] * n, "val_acc": None, "active": [True, False, False] + [True] * (n - 3)})
    report(2, {"train_loss": [0.5, 2.0, nan] + [3.0] * (n - 3), "val_loss": [0.7] * n,
               "active": [True] * n})
    first = {"train_loss": 1.0, "train_acc": 0.5, "val_loss": None, "val_acc": None}
    assert sent[0][0] == 1 and sent[0][1][keys[0]] == first
    assert sent[0][1][keys[1]]["train_loss"] == 2.0 and keys[2] not in sent[0][1]
    assert set(sent[0][1]) == set(keys) - {keys[2]}
    assert sent[1][0] == 2 and set(sent[1][1]) == set(keys) - {keys[1], keys[2]}
    assert sent[1][1][keys[0]] == {"train_loss": 0.5, "train_acc": None, "val_loss": 0.7, "val_acc": None}


def test_ray_pack_messages_reach_progress_and_files(tiny_prepared, tmp_path):
    job = _plan(tiny_prepared, tmp_path).chains[0][0]
    stream = io.StringIO()
    progress = Progress(0, 0, 1, stream=stream, run_dir=tmp_path / "run")
    deliver([(0, "start"), (0, "log", "jaffe baseline pack of 2: epoch 1/3"), (0, "log", "jaffe baseline pack of 2: epoch 1/3"),
             (0, "epoch", 1, {job.models[0].key: {"train_loss": 1.0}})], [job], progress)
    assert stream.getvalue().count("jaffe baseline pack of 2: epoch 1/3") == 2     # never folded
    # a Ray task's start reaches the console as the inline executor's does, naming the pack
    starts = [line for line in stream.getvalue().splitlines() if "] start  jaffe" in line]
    assert len(starts) == 1 and f"{pack_name(job)}, 3 epochs max" in starts[0], starts
    # the header, then a row for each selection the pack's training serves
    assert len(EpochFiles(tmp_path / "run").csv_path.read_text().splitlines()) == 2 + len(job.models[0].shared)


def test_ray_log_deduplication_is_off(monkeypatch):
    from ray._private import ray_logging

    from partfer.orchestrator.execution.cluster import keep_every_log_line
    monkeypatch.setattr(ray_logging, "RAY_DEDUP_LOGS", True)
    monkeypatch.setenv("RAY_DEDUP_LOGS", "1")
    line = "jaffe baseline pack of 10: epoch 6/30, 10 still training"

    def printed() -> list[str]:
        dedup = ray_logging.LogDeduplicator(5, None, None)
        out = []
        for pid in (1, 2):
            for batch in dedup.deduplicate({"ip": "a", "pid": pid, "lines": [line]}):
                out += batch["lines"]
        return out
    assert printed() == [line]                 # Ray's default folds the second pack's line away
    keep_every_log_line()
    assert printed() == [line, line]
    import os
    assert os.environ["RAY_DEDUP_LOGS"] == "0"
