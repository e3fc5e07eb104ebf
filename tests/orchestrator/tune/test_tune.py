"""Learning-rate sweeps on a real local Ray: trials, reuse of earlier stages, best.yaml."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from partfer.cli.tune import add_tune_parser, request_from
from partfer.data_prep.prepared import load_prepared
from partfer.orchestrator.config import load_config
from partfer.orchestrator.execution.plan import build_plan
from partfer.orchestrator.tune.search_space import SearchSpaceError, Space, numeric_space, parse_space, sample_points
from partfer.orchestrator.tune.sweep import SweepError, SweepRequest, run_sweep

TINY = {"image_size": 32, "networks": ["el"], "parts": ["mouth"], "device": "cpu",
        "datasets.jaffe.epochs": {"baseline": 2, "landmark": 2, "head": 2, "finetune": 3}}


def _stage_dirs(store: Path, stage: str) -> list[Path]:
    return sorted(p for p in (store / "models" / "jaffe").glob(f"*/fold*/{stage}-*") if (p / "meta.json").is_file())


def _csv_rows(path: str) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_sweep_reuses_earlier_stages_and_writes_a_runnable_best_config(tiny_prepared, tmp_path):
    store = tmp_path / "store"
    req = SweepRequest(config="demo", dataset="jaffe", network="el", stage="finetune",
                       lr="loguniform:1e-4:1e-2", samples=3, scheduler="asha",
                       overrides={**TINY, "storage": str(store)}, prepared={"jaffe": tiny_prepared})
    result = run_sweep(req)

    n_models = len(_stage_dirs(store, "landmark"))
    assert n_models == 4                                  # one part x 4 leave-one-subject-out folds
    assert len(_stage_dirs(store, "head")) == n_models
    assert result.pretrained == 2 * n_models              # landmark + head once, before the trials
    rows = _csv_rows(result.files["csv"])
    assert len(rows) == 3 and len({r["lr"] for r in rows}) == 3
    assert all(r["status"] in ("finished", "stopped") for r in rows)
    finished = [r for r in rows if r["status"] == "finished"]
    assert finished, "ASHA stopped every trial"
    assert all(int(r["epochs"]) == 3 for r in finished)
    assert len(_stage_dirs(store, "finetune")) == n_models * len(finished)
    assert Path(result.files["figure"]).stat().st_size > 1000
    assert "(best)" in Path(result.files["markdown"]).read_text()

    best = load_config(result.files["best_config"])
    best_row = min(finished, key=lambda r: float(r["best_val_loss"]))
    assert best["train"]["lr"]["finetune"] == float(best_row["lr"])
    assert best["image_size"] == 32 and best["storage"] == str(store.resolve())
    assert best["train"]["lr"]["landmark"] == load_config("demo")["train"]["lr"]["landmark"]
    # `partfer run --config best.yaml` plans nothing to train: every stage is the sweep's
    plan = build_plan(best, {"jaffe": load_prepared(tiny_prepared)}, best["storage"], "cpu", "r", pack_size=5)
    assert plan.chains == [] and plan.n_done == plan.n_model_stages == 3 * n_models

    # A second sweep on the same store: a finished rate replays its stored curve, a new one trains,
    # and the landmark and head models are neither retrained nor rewritten by any trial.
    before = {p: (p / "meta.json").read_bytes() for s in ("landmark", "head") for p in _stage_dirs(store, s)}
    done_lr = best_row["lr"]
    again = run_sweep(SweepRequest(**{**req.__dict__, "lr": f"grid:{done_lr},0.003", "scheduler": "fifo",
                                      "samples": 1}))
    assert again.pretrained == 0
    assert {p: (p / "meta.json").read_bytes() for p in before} == before
    assert len(_stage_dirs(store, "landmark")) == len(_stage_dirs(store, "head")) == n_models
    rows2 = {r["lr"]: r for r in _csv_rows(again.files["csv"])}
    assert set(rows2) == {str(float(done_lr)), "0.003"}
    assert all(r["status"] == "finished" for r in rows2.values())
    replayed = rows2[str(float(done_lr))]
    assert math.isclose(float(replayed["best_val_loss"]), float(best_row["best_val_loss"]), rel_tol=1e-4)


@pytest.mark.parametrize("network,stage,match", [
    ("baseline", "landmark", "has no landmark stage"),
    ("vgg", "finetune", "unknown network"),
    ("el", "warmup", "unknown stage"),
])
def test_impossible_sweeps_fail_before_any_work(tmp_path, network, stage, match):
    req = SweepRequest(config="demo", dataset="jaffe", network=network, stage=stage,
                       overrides={"storage": str(tmp_path)})
    with pytest.raises(SweepError, match=match):
        run_sweep(req)
    assert not any(tmp_path.iterdir())


def test_command_line_builds_the_request():
    import argparse
    parser = argparse.ArgumentParser()
    add_tune_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tune", "--config", "demo", "--dataset", "jaffe", "--network", "el",
                              "--stage", "head", "--lr", "grid:0.01,0.001", "--batch-size", "choice:16,32",
                              "--prepared", "jaffe=/p", "--out", "/s", "--set", "train.patience=3",
                              "--max-concurrent", "1"])
    req = request_from(args)
    assert (req.stage, req.lr, req.batch_size, req.max_concurrent) == ("head", "grid:0.01,0.001", "choice:16,32", 1)
    assert req.prepared == {"jaffe": "/p"} and req.overrides == {"train.patience": 3, "storage": "/s"}


def test_search_space_strings():
    assert parse_space("loguniform:1e-5:1e-2") == Space("loguniform", low=1e-5, high=1e-2)
    assert parse_space("uniform:0.1:0.5") == Space("uniform", low=0.1, high=0.5)
    assert parse_space("choice:16, 32,16") == Space("choice", values=(16, 32))
    assert parse_space("grid:1e-3,1e-4").values == (1e-3, 1e-4)
    for bad, match in [("loguniform:1e-2", "LOW:HIGH"), ("loguniform:0:1", "LOW > 0"),
                       ("uniform:0.5:0.1", "LOW < HIGH"), ("uniform:a:1", "'a' is not a finite number"),
                       ("normal:0:1", "KIND"), ("1e-3", "KIND"), ("choice:", "a,b,c"),
                       ("grid:1,,2", "a,b,c")]:
        with pytest.raises(SearchSpaceError, match=match) as info:
            parse_space(bad, "--lr")
        assert "--lr" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(SearchSpaceError, match="whole-number"):
        numeric_space(parse_space("uniform:8:64"), "--batch-size", integer=True)
    with pytest.raises(SearchSpaceError, match="not a whole number"):
        numeric_space(parse_space("choice:16,x"), "--batch-size", integer=True)


def test_points_are_reproducible_distinct_and_in_range():
    spaces = {"lr": parse_space("loguniform:1e-5:1e-2")}
    points = sample_points(spaces, 6, seed=3)
    assert points == sample_points(spaces, 6, seed=3)
    lrs = [p["lr"] for p in points]
    assert len(set(lrs)) == 6 and all(1e-5 <= x <= 1e-2 for x in lrs)
    assert all(float(f"{x:.3g}") == x for x in lrs)          # printed value == key value
    # finite choices are drawn without repeats; grids cross with the draws
    assert sorted(p["lr"] for p in sample_points({"lr": parse_space("choice:1,2,3")}, 5, 0)) == [1, 2, 3]
    grid = sample_points({"lr": parse_space("loguniform:1e-4:1e-3"), "batch_size": parse_space("grid:16,32")}, 2, 0)
    assert len(grid) == 4 and sorted({p["batch_size"] for p in grid}) == [16, 32]


def test_tune_options_are_refused_in_one_line_before_any_work(tmp_path, capsys):
    from partfer.cli import main
    store = tmp_path / "store"
    base = ["tune", "--config", "demo", "--dataset", "jaffe", "--network", "el", "--stage", "head", "--out", str(store)]
    for extra, message in ((["--grace-period", "-1"], "--grace-period must be a whole number >= 1, not -1"),
                           (["--samples", "0"], "--samples must be a whole number >= 1, not 0"),
                           (["--gpus-per-trial", "2"], r"--gpus-per-trial must be in (0, 1]"),
                           (["--set", "train.lr.head=-0.1"], "train.lr.head must be > 0, not -0.1")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"partfer: error: {message}") and err.count("\n") == 1, err
    assert not store.exists()
