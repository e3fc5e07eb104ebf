"""A pack's resumable state comes from the store, which others may write: it is read without running
code, a state a pack saved still resumes, and a state that cannot be read is logged, removed and
the pack starts over (it is only a cache)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from partfer.orchestrator.config import load_config
from partfer.orchestrator.execution.plan import build_plan
from partfer.orchestrator.storage.store import load_state
from partfer.orchestrator.training.train import run_pack

TINY = {"image_size": 32, "networks": ["el"], "parts": ["mouth"], "train.twin_selection": None,
        "datasets.jaffe.epochs": {"baseline": 2, "landmark": 3, "head": 2, "finetune": 2},
        "train.checkpoint_every": 1, "train.checkpoint_seconds": 0}


class _RunsCode:
    """Unpickled by a full unpickler, this creates the marker file (stands for `os.system(...)`)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Stop(Exception):
    pass


def _landmark_job(prepared: str, storage: Path):
    from partfer.data_prep.prepared import load_prepared
    cfg = load_config("demo", TINY)
    plan = build_plan(cfg, {"jaffe": load_prepared(prepared)}, str(storage), "cpu", "t", 2)
    return plan.chains[0][0]


def _hostile_state(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"keys": ["x"], "net": _RunsCode(marker)}, path)


def test_a_pickle_that_would_run_code_is_refused_without_running(tmp_path):
    marker, state = tmp_path / "ran", tmp_path / "packs" / "p" / "state.pt"
    _hostile_state(state, marker)
    lines: list[str] = []
    assert load_state(str(state), lines.append) is None
    assert not marker.exists(), "the state file ran code"
    assert not state.exists(), "the unusable state was kept"
    assert len(lines) == 1 and str(state) in lines[0] and "starts over" in lines[0], lines


@pytest.mark.parametrize("content", [b"", b"not a torch file", b"PK\x03\x04" + b"\0" * 40])
def test_a_damaged_state_is_named_removed_and_forgotten(tmp_path, content):
    state = tmp_path / "state.pt"
    state.write_bytes(content)
    lines: list[str] = []
    assert load_state(str(state), lines.append) is None
    assert not state.exists() and len(lines) == 1 and str(state) in lines[0]
    assert load_state(str(state), lines.append) is None and len(lines) == 1   # absent: nothing to say


@pytest.mark.slow
def test_a_pack_refuses_a_hostile_state_and_trains_from_scratch(tiny_prepared, tmp_path):
    job = _landmark_job(tiny_prepared, tmp_path / "store")
    marker, state = tmp_path / "ran", Path(job.state_dir) / "state.pt"
    _hostile_state(state, marker)
    lines: list[str] = []
    assert run_pack(job, log=lines.append).trained == 2
    assert not marker.exists(), "the state file ran code"
    assert any(str(state) in line and "starts over" in line for line in lines), lines
    assert not any("resumed" in line for line in lines)


@pytest.mark.slow
def test_a_truncated_state_no_longer_blocks_the_pack(tiny_prepared, tmp_path):
    job = _landmark_job(tiny_prepared, tmp_path / "store")

    def stop_at_epoch_2(epoch, _metrics):
        if epoch == 2:
            raise _Stop
    with pytest.raises(_Stop):
        run_pack(job, log=lambda _: None, on_epoch=stop_at_epoch_2)
    state = Path(job.state_dir) / "state.pt"
    whole = state.read_bytes()
    assert load_state(str(state), print) is not None     # what a pack saves loads weights-only
    state.write_bytes(whole[: len(whole) // 2])
    lines: list[str] = []
    assert run_pack(job, log=lines.append).trained == 2
    assert any(str(state) in line and "cannot be used" in line for line in lines), lines
    assert not state.exists()


@pytest.mark.slow
def test_a_saved_state_resumes(tiny_prepared, tmp_path):
    job = _landmark_job(tiny_prepared, tmp_path / "store")

    def stop_at_epoch_2(epoch, _metrics):
        if epoch == 2:
            raise _Stop
    with pytest.raises(_Stop):
        run_pack(job, log=lambda _: None, on_epoch=stop_at_epoch_2)
    lines: list[str] = []
    assert run_pack(job, log=lines.append).trained == 2
    assert any("resumed landmark pack of 2 at epoch 1" in line for line in lines), lines
