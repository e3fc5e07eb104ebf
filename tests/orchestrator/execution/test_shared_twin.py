"""One training for every selection it can serve: the shared plan (the main selection and its
no-peeking twin, the first stages trained once) gives the very models, and so the very Table I,
that two separate trainings give, one per selection. CPU runs repeat exactly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from partfer.data_prep.prepared import load_prepared
from partfer.orchestrator.config import load_config
from partfer.orchestrator.execution.plan import build_plan
from partfer.orchestrator.training.train import run_pack
from partfer.results.evaluate import evaluate_run
from partfer.results.load import load_run
from partfer.results.tables import table1_frame

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]     # trains three plans

TINY_CONFIG = str(Path(__file__).parents[2] / "configs" / "tiny.yaml")
TINY = {"image_size": 32, "members": 1, "parts": ["mouth", "nose"],
        "datasets.jaffe.epochs": {"baseline": 3, "landmark": 3, "head": 2, "finetune": 2}}


def _train(prepared_dir, storage, **over):
    """Plan and train every chain in this process; the run's folder with its plan.json."""
    cfg = load_config(TINY_CONFIG, {**TINY, **over})
    plan = build_plan(cfg, {"jaffe": load_prepared(prepared_dir)}, str(storage), "cpu", "r", pack_size=6)
    trained = sum(run_pack(job, log=lambda _: None).trained for chain in plan.chains for job in chain)
    assert trained == plan.n_model_stages
    run_dir = storage / "runs" / "r"
    run_dir.mkdir(parents=True)
    plan.run_plan.settings = {"selection": cfg["train"]["selection"], "image_size": 32}
    (run_dir / "plan.json").write_text(plan.run_plan.to_json())
    return plan, run_dir


def _table1(run_dir, selection):
    return table1_frame(evaluate_run(load_run(run_dir, selection))).drop(columns=["selection"])


def _probs(run_dir, selection):
    results = load_run(run_dir, selection)
    return {r.key: pq.read_table(results.storage_root / r.dir / "predictions.parquet").column("probs").to_pylist()
            for r in results.plan.models}


@pytest.fixture(scope="module")
def three_plans(tiny_prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("twin")
    shared = _train(tiny_prepared, root / "shared", **{"train.twin_selection": "last"})
    alone = {sel: _train(tiny_prepared, root / sel, **{"train.selection": sel, "train.twin_selection": None})
             for sel in ("evaluated_fold", "last")}
    return shared, alone


def test_the_shared_plan_trains_less_and_keeps_both_selections_models(three_plans):
    (shared, _), alone = three_plans
    packs = sum(len(c) for c in shared.chains)
    assert packs < sum(len(c) for plan, _ in alone.values() for c in plan.chains)
    assert shared.n_model_stages == sum(plan.n_model_stages for plan, _ in alone.values())


@pytest.mark.parametrize("selection", ["evaluated_fold", "last"])
def test_each_selection_gets_what_its_own_training_gives(three_plans, selection):
    (_, shared_dir), alone = three_plans
    own_dir = alone[selection][1]
    ours, theirs = _probs(shared_dir, selection), _probs(own_dir, selection)
    assert ours.keys() == theirs.keys()                 # the same keys: a store of either is reused
    for key in ours:
        assert np.array_equal(np.asarray(ours[key]), np.asarray(theirs[key])), key
    table = _table1(shared_dir, selection)
    assert table.equals(_table1(own_dir, selection))
    assert table[["Baseline", "FTL", "EL"]].notna().all(axis=None)


def test_the_selections_differ_where_they_keep_different_epochs(three_plans):
    (_, shared_dir), _ = three_plans
    main, twin = _probs(shared_dir, "evaluated_fold"), _probs(shared_dir, "last")
    assert main.keys().isdisjoint(twin.keys())
