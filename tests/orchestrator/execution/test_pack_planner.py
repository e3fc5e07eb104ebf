"""The planner: the paper's work from its config, the rate curve through the measured packs (the
hardware profile's projection), and layouts that use more GPUs only through more (smaller) packs."""
from __future__ import annotations

import pytest

from partfer.orchestrator.config import ConfigError, load_config
from partfer.orchestrator.execution.pack_planner import ProjectionRates, RateCurve, choose, paper_workload, project

PAPER_FOLDS = {"ckplus": 10, "jaffe": 10, "sfew": 1}
RATES = ProjectionRates.from_config(load_config("paper"))
H200, START = RATES.curve, RATES.trainer_start_seconds


def _steps(kinds, selection=None) -> int:
    return sum(k.units * sum(k.per_model) for k in kinds if selection in (None, k.selection))


def test_paper_workload_is_the_recipe_image_steps():
    alone = paper_workload(load_config("paper", {"train.twin_selection": None}), PAPER_FOLDS)
    assert _steps(alone, "evaluated_fold") == _steps(alone) == 106_560_000
    by_set = {name: sum(k.units * sum(k.per_model) for k in alone if k.dataset == name) for name in PAPER_FOLDS}
    assert by_set == {"ckplus": 57_600_000, "jaffe": 43_200_000, "sfew": 5_760_000}


def test_the_twin_shares_the_first_stage_and_trains_its_own_head_and_finetune():
    kinds = paper_workload(load_config("paper"), PAPER_FOLDS)
    assert {k.selection for k in kinds} == {"evaluated_fold+last"}
    # 213.12M when every model trained twice; the Baseline and landmark stages are trained once
    assert _steps(kinds) == 156_480_000
    jaffe = sum(k.units * sum(k.per_model) for k in kinds if k.dataset == "jaffe")
    assert jaffe == 62_400_000                        # 43.2M + the twin's head and fine-tuning 19.2M
    transfer = next(k for k in kinds if k.dataset == "jaffe" and len(k.per_model) > 1)
    assert transfer.per_model == (100 * 960, 10 * 960, 190 * 960, 10 * 960, 190 * 960)


def test_a_patience_or_held_out_subjects_train_the_twin_whole():
    for overrides in ({"train.patience": 20}, {"train.selection": "heldout_subjects"}):
        kinds = paper_workload(load_config("paper", overrides), PAPER_FOLDS)
        assert len({k.selection for k in kinds}) == 2
        assert _steps(kinds) == 213_120_000


def test_the_measured_rates_come_from_the_hardware_profile():
    assert RATES == ProjectionRates("H200", ((5, 13_000.0), (50, 34_700.0)), 15.0)
    for profile in ("cpu", "cluster"):                  # both include gpu.yaml's measured figures
        assert ProjectionRates.from_config(load_config("paper", {"hardware": profile})) == RATES
    other = ProjectionRates.from_config(load_config("paper", {"projection.pack_rates": [[10, 5000.0], [40, 8000.0]]}))
    assert other.curve.rate(10) == pytest.approx(5000) and other.curve.rate(40) == pytest.approx(8000)
    for bad in ([[5, 13000.0]], [[5, 1.0], [5, 2.0]], [[5, "fast"], [50, 1.0]], [[5, 1.0], [50, -1.0]]):
        with pytest.raises(ValueError, match="two \\[models, images per second\\] pairs"):
            ProjectionRates.from_config(load_config("paper", {"projection.pack_rates": bad}))
    with pytest.raises(ConfigError, match="unknown config key projection.gpus"):
        load_config("paper", {"projection.gpus": "A100"})


def test_rate_curve_passes_through_the_measured_packs():
    assert H200.rate(5) == pytest.approx(13_000)
    assert H200.rate(50) == pytest.approx(34_700)
    assert H200.rate(10) < H200.rate(25) < H200.rate(50) < H200.top
    assert RateCurve.flat(7.0).rate(1) == RateCurve.flat(7.0).rate(50) == 7.0


def test_one_gpu_takes_the_work_at_the_pack_rate_plus_startups():
    cfg = load_config("paper", {"train.twin_selection": None, "networks": ["baseline"]})
    kinds = paper_workload(cfg, {"ckplus": 10})               # 50 Baseline models: one 50-model pack
    layout = project(kinds, 1, 50, 1, H200, START)
    assert layout.runs == 1 and layout.concurrent == 1
    assert layout.wall_seconds == pytest.approx(19_200_000 / 34_700 + 15.0)


def test_past_the_chain_count_only_smaller_packs_use_more_gpus():
    kinds = paper_workload(load_config("paper", {"train.twin_selection": None}), PAPER_FOLDS)
    big8, big32 = project(kinds, 8, 50, 1, H200, START), project(kinds, 32, 50, 1, H200, START)
    assert big32.wall_seconds == pytest.approx(big8.wall_seconds, rel=0.2)    # ~9 chains: 32 GPUs idle
    best = choose(kinds, 32, H200, START)
    assert best.pack_size < 50 and best.wall_seconds < 0.6 * big32.wall_seconds
    assert choose(kinds, 1, H200, START).pack_size == 50                              # one GPU: the biggest packs


def test_startups_make_more_runs_cost_more():
    kinds = paper_workload(load_config("paper", {"train.twin_selection": None}), PAPER_FOLDS)
    assert project(kinds, 1, 5, 1, H200, START).wall_seconds > project(kinds, 1, 50, 1, H200, START).wall_seconds
    free, paid = project(kinds, 4, 50, 1, H200, 0.0), project(kinds, 4, 50, 1, H200, 15.0)
    assert paid.wall_seconds > free.wall_seconds
