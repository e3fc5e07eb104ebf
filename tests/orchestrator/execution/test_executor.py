"""Executors are chosen by name from one registry, for runs, final models and sweeps alike; a new
one is a class and one registry line."""
import json
from pathlib import Path

import pytest

from partfer.orchestrator.config import ConfigError, load_config
from partfer.orchestrator.execution.executor import EXECUTORS, Executor, executor_class, make_executor
from partfer.orchestrator.execution.executors import InlineExecutor, RayExecutor, run_inline
from partfer.orchestrator.execution.runner import RunRequest, run
from partfer.orchestrator.execution.train_executor import TrainExecutor


class ReverseExecutor(InlineExecutor):
    """A toy executor: the inline one, running the chains last first."""
    runs: list[list[int]] = []             # each call's chains (by fold), in the order it ran them

    def run_chains(self, chains, progress):
        ordered = list(reversed(chains))
        ReverseExecutor.runs.append([chain[0].models[0].fold for chain in ordered])
        return run_inline(ordered, progress)


@pytest.fixture
def reverse_executor(monkeypatch):
    """The toy registered by its one registry line, for this test only."""
    monkeypatch.setitem(EXECUTORS, "reverse", f"{__name__}:ReverseExecutor")
    ReverseExecutor.runs.clear()
    return "reverse"


def test_each_name_gives_its_implementation():
    assert executor_class("inline") is InlineExecutor and executor_class("ray") is RayExecutor
    assert executor_class("train") is TrainExecutor
    assert all(issubclass(executor_class(name), Executor) for name in EXECUTORS)
    assert not InlineExecutor.uses_ray and RayExecutor.uses_ray and TrainExecutor.uses_ray


def test_an_unknown_name_is_a_config_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match="executor must be one of ray, inline, train, not 'rocket'"):
        executor_class("rocket")


def test_a_handful_of_packs_goes_where_the_executor_says():
    cfg = load_config("demo")
    # Train runs cost a start-up each: a final model's few packs go to Ray tasks instead
    assert type(make_executor("train", cfg, "/s", "cpu", few_packs=True)) is RayExecutor
    assert type(make_executor("train", cfg, "/s", "cpu")) is TrainExecutor
    assert type(make_executor("inline", cfg, "/s", "cpu", few_packs=True)) is InlineExecutor
    assert type(make_executor("ray", cfg, "/s", "cpu", few_packs=True)) is RayExecutor


@pytest.mark.slow
def test_a_run_uses_a_registered_executor_by_name(reverse_executor, tiny_prepared, tmp_path):
    cfg = load_config("demo", {
        "image_size": 32, "networks": ["baseline"], "members": 1, "train.twin_selection": None,
        "train.pack_size_cpu": 1, "datasets.jaffe.epochs": {"baseline": 1, "landmark": 1, "head": 1, "finetune": 1},
        "storage": str(tmp_path / "store"), "executor": reverse_executor, "device": "cpu"})
    run_dir = Path(run(RunRequest(config=cfg, prepared={"jaffe": tiny_prepared}), log=lambda _: None))

    ran, = ReverseExecutor.runs
    assert ran == sorted(ran, reverse=True) and len(set(ran)) == 4    # 1 member x 4 folds, last fold first
    settings = json.loads((run_dir / "plan.json").read_text())["settings"]
    assert settings["executor"] == "reverse" and settings["status"] == "finished"
    assert settings["trained_model_stages"] == 4
