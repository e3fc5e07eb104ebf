"""A run that stops before its end (a crash; a SIGKILL leaves the same plan.json) is reported as
incomplete, never as "running"."""
from __future__ import annotations

import json

import pytest

from partfer.orchestrator.execution import executors
from partfer.orchestrator.config import load_config
from partfer.orchestrator.execution.runner import RunRequest, run


class _Crash(RuntimeError):
    pass


def test_a_crashed_runs_plan_and_report_do_not_say_running(tiny_prepared, tmp_path, monkeypatch):
    def crash(*_args, **_kwargs):
        raise _Crash("a pack failed")
    monkeypatch.setattr(executors, "run_inline", crash)
    cfg = load_config("demo", {"image_size": 32, "networks": ["el"], "parts": ["mouth"],
                               "storage": str(tmp_path / "store"), "executor": "inline", "device": "cpu"})
    with pytest.raises(_Crash):
        run(RunRequest(config=cfg, prepared={"jaffe": tiny_prepared}), log=lambda _: None)
    plan_file, = (tmp_path / "store" / "runs").glob("*/plan.json")
    assert json.loads(plan_file.read_text())["settings"]["status"] == "incomplete"
    from partfer.results.comparability import partial_note
    from partfer.orchestrator.records import RunPlan
    note = partial_note(RunPlan.from_json(plan_file.read_text()))
    assert note and "incomplete" in note and "running" not in note
