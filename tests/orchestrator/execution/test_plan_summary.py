"""`partfer run --dry-run`: the plan's work in image-steps, and a projected time from a measured rate."""
from __future__ import annotations

import json
from pathlib import Path

from partfer.data_prep.prepared import load_prepared
from partfer.cli import main
from partfer.orchestrator.config import load_config
from partfer.orchestrator.execution.plan import build_plan
from partfer.orchestrator.execution.pack_work import pack_work
from partfer.orchestrator.execution.plan_summary import measured_rate, summary_lines

EPOCHS = {"baseline": 7, "landmark": 3, "head": 2, "finetune": 5}


def test_image_steps_are_models_x_epochs_x_steps_x_batch(tiny_prepared, tmp_path):
    cfg = load_config("demo", {"train.steps_per_epoch": 30, "train.batch_size": 32, "datasets.jaffe.epochs": EPOCHS,
                               "members": 5, "train.twin_selection": "last"})
    plan = build_plan(cfg, {"jaffe": load_prepared(tiny_prepared)}, str(tmp_path), "cpu", "r", pack_size=7)
    work = [pack_work(job) for chain in plan.chains for job in chain]
    assert all(w.steps == 30 and w.batch == 32 for w in work)
    folds, transfer_models = 4, 10
    shared = (5 * folds * EPOCHS["baseline"] + transfer_models * folds * EPOCHS["landmark"]) * 30 * 32
    own = transfer_models * folds * (EPOCHS["head"] + EPOCHS["finetune"]) * 30 * 32   # each selection's
    assert sum(w.image_steps for w in work) == shared + 2 * own
    lines = summary_lines(plan.chains, plan.n_model_stages, plan.n_done, "evaluated_fold", None)
    assert f"image-steps in all: {(shared + 2 * own) / 1e6:,.2f}M (the no-peeking twin's own training: " \
           f"{own / 1e6:,.2f}M of them; {shared / 1e6:,.2f}M in trainings that serve both selections)" in lines
    assert any(line.split()[:3] == ["jaffe", "evaluated_fold+last", "landmark"] for line in lines)
    assert any("no measured rate" in line for line in lines)


def _finished_run(storage: Path, run_id: str, **settings) -> None:
    run = storage / "runs" / run_id
    run.mkdir(parents=True)
    base = {"status": "finished", "device": "cpu", "image_size": 32, "train_images": 1000,
            "pack_busy_seconds": 4.0, "finished": 1.0}
    (run / "plan.json").write_text(json.dumps({"settings": {**base, **settings}}))


def test_the_rate_comes_from_the_latest_finished_run_on_the_same_device_and_size(tmp_path):
    _finished_run(tmp_path, "old", finished=1.0)
    _finished_run(tmp_path, "new", finished=2.0, train_images=3000)
    _finished_run(tmp_path, "gpu", device="cuda", finished=3.0)
    _finished_run(tmp_path, "big", image_size=160, finished=4.0)
    _finished_run(tmp_path, "crashed", status="incomplete", finished=5.0)
    rate = measured_rate(str(tmp_path), "cpu", 32)
    assert rate.run_id == "new" and rate.images_per_second == 750.0
    assert measured_rate(str(tmp_path), "cuda:0", 32).run_id == "gpu"
    assert measured_rate(str(tmp_path), "cpu", 64) is None


def test_dry_run_prints_the_plan_and_trains_nothing(tiny_prepared, tmp_path, capsys):
    config = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
    _finished_run(tmp_path, "earlier", train_images=2000, pack_busy_seconds=10.0)
    code = main(["run", "--config", str(config), "--prepared", f"jaffe={tiny_prepared}", "--executor", "inline",
                 "--device", "cpu", "--out", str(tmp_path), "--dry-run"])
    assert code == 0
    out = capsys.readouterr().out
    assert "plan: " in out and "image-steps in all:" in out
    assert "at 200 images/s (measured by run earlier)" in out
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["earlier"]     # no run written
    assert not (tmp_path / "models").exists()
