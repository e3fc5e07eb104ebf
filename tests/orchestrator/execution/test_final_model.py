"""A final model (`partfer run --final`): a tiny EL run whose selection keeps per-fold epochs, then
each part trained on every subject for the median kept epoch, exported by default and used."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from partfer.data_prep.prepared import load_prepared
from partfer.orchestrator.inference.export import export_model
from partfer.orchestrator.execution.final import FINAL_FILE, FINAL_FOLD, median_epoch, read_final, train_final_for_run
from partfer.orchestrator.inference.predict import OK, Predictor
from partfer.orchestrator.records import RunPlan, main_models

PARTS = ["eyebrows", "eyes", "nose", "mouth", "jaw"]
EPOCHS = {"baseline": 1, "landmark": 3, "head": 2, "finetune": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def final_run(tmp_path_factory, shared_ray):
    """3 subjects -> 3 folds, selection on the evaluated fold (epochs kept differ by fold), no twin."""
    from partfer.orchestrator.config import load_config
    from partfer.orchestrator.execution.runner import RunRequest, run

    cfg = load_config("demo", {
        "image_size": 32, "networks": ["el"], "train.twin_selection": None,
        "train.selection": "evaluated_fold", "datasets.jaffe.epochs": EPOCHS,
        "synthetic": {"jaffe": {"subjects": 3, "per_class": 2, "seed": 0, "size": 96}},
        "storage": str(tmp_path_factory.mktemp("store")), "executor": "inline", "device": "cpu"})
    run_dir = Path(run(RunRequest(config=cfg), log=lambda text: None))
    lines: list[str] = []
    results = train_final_for_run(run_dir, cfg, log=lines.append)
    return run_dir, cfg, results, lines


def _meta(storage: Path, rel: str) -> dict:
    return json.loads((storage / rel / "meta.json").read_text())


def test_median_epoch_rounds_half_up_and_never_below_one():
    assert median_epoch([1, 2, 3, 10]) == 3 and median_epoch([4]) == 4 and median_epoch([2, 3]) == 3
    assert median_epoch([0, 0, 1]) == 1


@pytest.mark.slow
def test_final_models_train_on_every_subject_for_the_median_selected_epochs(final_run):
    run_dir, cfg, results, lines = final_run
    storage = run_dir.parent.parent
    plan = RunPlan.from_json((run_dir / "plan.json").read_text())
    cv = [r for r in main_models(plan) if r.network == "el"]
    record = json.loads((run_dir / FINAL_FILE).read_text())
    assert record["selection"] == "evaluated_fold"
    expected = {}
    for stage in ("landmark", "head", "finetune"):
        kept = [_meta(storage, r.stage_dirs[stage])["selected_epoch"] for r in cv]
        assert sorted(kept) == sorted(record["selected_epochs"]["jaffe"]["el"][stage]) and len(kept) == 15
        expected[stage] = max(1, int(np.floor(statistics.median(kept) + 0.5)))
        assert 1 <= expected[stage] <= EPOCHS[stage]
    assert record["epochs"]["jaffe"]["el"] == expected
    assert any("final el on all jaffe subjects" in line for line in lines)

    finals = read_final(run_dir)
    assert [r.member for r in finals] == PARTS and all(r.fold == FINAL_FOLD for r in finals)
    assert not {r.key for r in finals} & {r.key for r in plan.models}         # keys of their own
    data = load_prepared(plan.datasets["jaffe"].prepared)
    n_rows, n_landmarked = len(data.sample_ids), int(np.asarray(data.landmarks_ok).sum())
    for r in finals:
        assert "fold-1" in r.dir
        for stage, rel in r.stage_dirs.items():
            meta = _meta(storage, rel)
            assert meta["fold"] == FINAL_FOLD and meta["selection"] == "last" and meta["final"] is True
            assert meta["epochs_trained"] == expected[stage] == meta["selected_epoch"]
            assert meta["n_test"] == 0 and meta["n_val"] == 0
            assert meta["n_train"] == (n_landmarked if stage == "landmark" else n_rows)   # every subject's rows
    assert sum(res.trained for res in results) == 15                          # 5 parts x 3 stages
    import csv
    with open(run_dir / "metrics" / "epochs.csv", newline="") as fh:
        final_rows = [r for r in csv.DictReader(fh) if r["fold"] == str(FINAL_FOLD)]
    assert len(final_rows) == 5 * sum(expected.values())                     # every final epoch is watchable

    # run again: everything is found done, nothing trains, the same record is written
    again = train_final_for_run(run_dir, cfg, log=lambda text: None)
    assert sum(res.trained for res in again) == 0
    assert json.loads((run_dir / FINAL_FILE).read_text()) == record


@pytest.mark.slow
def test_export_takes_the_final_model_by_default(final_run, tmp_path):
    run_dir, _, _, _ = final_run
    notes: list[str] = []
    spec = export_model(run_dir, "jaffe", "el", tmp_path / "final", log=notes.append).spec
    assert spec.folds == [FINAL_FOLD] and [m.name for m in spec.members] == PARTS
    assert all(m.fold == FINAL_FOLD and m.test_acc is None for m in spec.members)
    assert "final model, trained on all subjects" in notes[0]
    fold0 = export_model(run_dir, "jaffe", "el", tmp_path / "fold0", fold=0, log=lambda text: None).spec
    assert fold0.folds == [0] and {m.key for m in fold0.members}.isdisjoint(m.key for m in spec.members)
    # the final weights are the final checkpoints, and they classify a face
    storage = run_dir.parent.parent
    weights = torch.load(tmp_path / "final" / "weights.pt", weights_only=True)
    checkpoint = torch.load(storage / spec.members[0].source / "checkpoint.pt", weights_only=True)
    key = next(k for k in checkpoint if not k.startswith("landmark_head."))
    assert torch.equal(weights[f"{PARTS[0]}.{key}"], checkpoint[key])
    plan = RunPlan.from_json((run_dir / "plan.json").read_text())
    face = sorted(Path(json.loads((Path(plan.datasets["jaffe"].prepared) / "manifest.json").read_text())["root"])
                  .glob("*.tiff"))[0]
    df = Predictor.from_dir(tmp_path / "final", device="cpu").predict([face])
    assert df["status"].tolist() == [OK] and df["label"].iloc[0] in spec.classes
