"""Network recipes are described once (orchestrator/networks.py): a fourth one, registered there
alone, is validated, planned, swept, trained and reported with no edit anywhere else."""
import json
from pathlib import Path

import numpy as np
import pytest

from partfer.data_prep.prepared import load_prepared
from partfer.orchestrator.config import ConfigError, load_config
from partfer.orchestrator.execution.plan import build_plan, units_for
from partfer.orchestrator.networks import (BASELINE_STAGES, NETWORKS, TRANSFER_STAGES, Network, gradcam_systems,
                                           gradcam_title, register, stage_sequences)


@pytest.fixture
def toy():
    """Registers a recipe for one test and removes it afterwards."""
    added = []

    def add(spec: Network) -> Network:
        added.append(register(spec))
        return spec
    yield add
    for spec in added:
        del NETWORKS[spec.name]


def test_the_papers_three_recipes():
    assert list(NETWORKS) == ["baseline", "ftl", "el"]
    cfg = {"members": 2, "parts": ["mouth", "nose"]}
    assert NETWORKS["baseline"].members(cfg) == [("m0", None), ("m1", None)]
    assert NETWORKS["ftl"].members(cfg) == [("m0", "face"), ("m1", "face")]
    assert NETWORKS["el"].members(cfg) == [("mouth", "mouth"), ("nose", "nose")]
    assert stage_sequences() == [BASELINE_STAGES, TRANSFER_STAGES]
    assert [NETWORKS[n].member_column(m) for n, m in (("ftl", "m3"), ("el", "jaw"))] == ["FTL m3", "Jaw"]
    assert gradcam_systems() == ["baseline", "ftl", "el-eyebrows", "el-eyes", "el-nose", "el-mouth", "el-jaw"]
    assert [gradcam_title(s) for s in ("baseline", "el-mouth", "other")] == ["Baseline", "EL mouth", "other"]
    assert not NETWORKS["baseline"].has_landmarks and NETWORKS["el"].has_landmarks


def test_a_network_must_be_registered_to_be_configured():
    with pytest.raises(ConfigError, match="unknown network"):
        load_config("demo", {"networks": ["mouth_first"]})


def test_a_registered_network_is_planned_with_its_own_stages_members_and_regions(toy, tiny_prepared, tmp_path):
    toy(Network("mouth_first", "Mouth-first", ("landmark", "finetune"), region="mouth"))
    cfg = load_config("demo", {"networks": ["baseline", "mouth_first"], "members": 2, "train.twin_selection": None})
    assert stage_sequences() == [BASELINE_STAGES, TRANSFER_STAGES, ("landmark", "finetune")]
    units = units_for(cfg, "jaffe", [0, 1])
    assert [(u.network, u.member, u.fold, u.region) for u in units if u.network == "mouth_first"] == [
        ("mouth_first", "m0", 0, "mouth"), ("mouth_first", "m0", 1, "mouth"),
        ("mouth_first", "m1", 0, "mouth"), ("mouth_first", "m1", 1, "mouth")]
    assert {u.stages for u in units} == {BASELINE_STAGES, ("landmark", "finetune")}

    plan = build_plan(cfg, {"jaffe": load_prepared(tiny_prepared)}, str(tmp_path), "cpu", "r1", pack_size=8)
    assert sorted([p.stage.stage for p in chain] for chain in plan.chains) == [["baseline"], ["landmark", "finetune"]]
    jobs = {(j.meta["network"], j.meta["member"], j.fold, pack.stage.stage): j
            for chain in plan.chains for pack in chain for j in pack.models}
    landmark, finetune = jobs[("mouth_first", "m1", 2, "landmark")], jobs[("mouth_first", "m1", 2, "finetune")]
    assert landmark.region == finetune.region == "mouth"
    assert finetune.upstream_dir == landmark.out_dir and landmark.upstream_dir is None
    assert plan.n_model_stages == 2 * 4 * 1 + 2 * 4 * 2           # 2 members x 4 folds, 1 and 2 stages
    toys = [r for r in plan.run_plan.models if r.network == "mouth_first"]
    assert len(toys) == 8 and {r.stage for r in toys} == {"finetune"}
    assert all(set(r.stage_dirs) == {"landmark", "finetune"} for r in toys)


def test_a_registered_network_is_swept_by_its_stages(toy):
    from partfer.orchestrator.tune.sweep import SweepError, SweepRequest, check_request
    toy(Network("mouth_first", "Mouth-first", ("landmark", "finetune"), region="mouth"))
    cfg = load_config("demo")
    check_request(SweepRequest(config="demo", dataset="jaffe", network="mouth_first", stage="finetune"), cfg)
    with pytest.raises(SweepError, match="has no head stage"):
        check_request(SweepRequest(config="demo", dataset="jaffe", network="mouth_first", stage="head"), cfg)


@pytest.mark.slow
def test_a_registered_network_is_trained_and_reported(toy, tiny_prepared, tmp_path):
    from partfer.orchestrator.execution.runner import RunRequest, run
    from partfer.results.evaluate import evaluate_run
    from partfer.results.load import load_run
    from partfer.results.report import build_report
    toy(Network("scratch", "Scratch", BASELINE_STAGES))
    cfg = load_config("demo", {
        "image_size": 32, "networks": ["el", "scratch"], "parts": ["mouth"], "members": 1,
        "train.twin_selection": None,
        "datasets.jaffe.epochs": {"baseline": 1, "landmark": 1, "head": 1, "finetune": 1},
        "storage": str(tmp_path / "store"), "executor": "inline", "device": "cpu"})
    run_dir = Path(run(RunRequest(config=cfg, prepared={"jaffe": tiny_prepared}), log=lambda _: None))

    settings = json.loads((run_dir / "plan.json").read_text())["settings"]
    assert settings["status"] == "finished" and settings["trained_model_stages"] == (3 + 1) * 4
    scores = {s.column: s for s in evaluate_run(load_run(run_dir)).for_pair("jaffe", "jaffe")}
    assert {"EL", "Mouth", "Scratch", "Scratch m0"} <= set(scores)
    assert sorted(scores["Scratch"].fold_accuracy) == [0, 1, 2, 3]
    report = build_report(run_dir).read_text()
    assert "| Scratch |" in report and "| scratch | " in report      # its ensemble's scores, its members alone
    assert (run_dir / "confusion" / "jaffe_scratch.csv").is_file()
    with np.load(run_dir / "analysis" / "gradcam_jaffe.npz") as gradcam:       # faces chosen by EL's tests
        assert {"map_scratch", "map_el-mouth"} <= set(gradcam.files)
