"""A pack's resumable state comes from the store, which others may write: it is read without running
code, a state a pack saved still resumes, and a state that cannot be read is logged, removed and
the pack starts over (it is only a cache)."""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pytest
import torch

from partfer.orchestrator.config import load_config
from partfer.orchestrator.execution.plan import build_plan
from partfer.orchestrator.storage.store import load_state
from partfer.orchestrator.training.pack_state import expected_state, validate_state
from partfer.orchestrator.training.train import build_network, run_pack

TINY = {"image_size": 32, "train.steps_per_epoch": None, "networks": ["el"], "parts": ["mouth"], "train.twin_selection": None,
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


# ---- a state that loads but does not fit the pack ---------------------------------------------------

@pytest.fixture(scope="module")
def saved_state(tiny_prepared, tmp_path_factory) -> dict:
    """The real state.pt of the tiny landmark pack, as its first epoch saved it."""
    job = _landmark_job(tiny_prepared, tmp_path_factory.mktemp("store"))

    def stop_at_epoch_2(epoch, _metrics):
        if epoch == 2:
            raise _Stop
    with pytest.raises(_Stop):
        run_pack(job, log=lambda _: None, on_epoch=stop_at_epoch_2)
    return torch.load(Path(job.state_dir) / "state.pt", map_location="cpu", weights_only=True)


def _expected(job) -> dict:
    """What a state of `job` must hold, from a fresh network built as run_pack builds it."""
    net = build_network(job, list(job.models))
    opt = torch.optim.Adam(net.trainable_parameters(job.stage.stage), lr=job.stage.lr)
    return expected_state([m.key for m in job.models], net, opt, net.snapshot(), torch.Generator(),
                          job.stage.max_epochs)


def _first(mapping: dict) -> str:
    return next(iter(mapping))


BROKEN = {
    "lacks gen": lambda s: s.pop("gen"),
    "its model keys are not this pack's": lambda s: s.update(keys=list(reversed(s["keys"]))),
    r"net does not hold this network's tensors \(lacks": lambda s: s["net"].pop(_first(s["net"])),
    r"net\['.*'\] is torch.float32 \(3,\), not torch.float32": lambda s: s["net"].update({_first(s["net"]): torch.zeros(3)}),
    r"best\['.*'\] is torch.float64": lambda s: s["best"].update({_first(s["best"]): s["best"][_first(s["best"])].double()}),
    "opt's parameter groups do not match": lambda s: s["opt"]["param_groups"][0]["params"].pop(),
    "opt's 'exp_avg' of parameter 0 does not fit its shape": lambda s: s["opt"]["state"][0].update(exp_avg=torch.zeros(7)),
    r"active is not a torch.bool tensor of 2 values": lambda s: s.update(active=torch.ones(3, dtype=torch.bool)),
    r"best_loss is not a torch.float32 tensor": lambda s: s.update(best_loss=s["best_loss"].double()),
    r"epoch '1' is not a whole number in \[0, 3\]": lambda s: s.update(epoch="1"),
    r"epoch 1000000 is not a whole number in \[0, 3\]": lambda s: s.update(epoch=10**6),
    r"last_epoch holds epochs outside \[0, 1\]": lambda s: s.update(last_epoch=torch.tensor([1, 9])),
    "history is not one list of at most 1 epoch rows per model": lambda s: s.update(history=s["history"][:1]),
    r"gen is not a generator state \(a ByteTensor of 5056 bytes\)": lambda s: s.update(gen=s["gen"].float()),
    r"computed is not a set of model indices in \[0, 2\)": lambda s: s.update(computed=torch.tensor([0, 5])),
    "last_val is not a loss and an accuracy per model": lambda s: s["last_val"].pop("acc"),
}


@pytest.mark.slow
@pytest.mark.ray
def test_every_key_of_a_saved_state_is_checked_against_the_pack(tiny_prepared, saved_state, tmp_path):
    expected = _expected(_landmark_job(tiny_prepared, tmp_path / "store"))
    assert validate_state(saved_state, expected) is None              # what a pack saves fits it
    for reason, breaks in BROKEN.items():
        broken = copy.deepcopy(saved_state)
        breaks(broken)
        why = validate_state(broken, expected)
        assert why is not None and re.match(reason, why), (reason, why)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("reason", ["lacks gen", "epoch 1000000 is not"])
def test_a_state_that_does_not_fit_is_named_removed_and_the_pack_trains_from_scratch(tiny_prepared, saved_state,
                                                                                     tmp_path, reason):
    job = _landmark_job(tiny_prepared, tmp_path / "store")
    state = Path(job.state_dir) / "state.pt"
    broken = copy.deepcopy(saved_state)
    BROKEN[next(k for k in BROKEN if k.startswith(reason))](broken)
    state.parent.mkdir(parents=True)
    torch.save(broken, state)
    lines: list[str] = []
    assert run_pack(job, log=lines.append).trained == 2
    named = [line for line in lines if line.startswith(f"resumable state {state} cannot be used (")]
    assert len(named) == 1 and re.search(reason, named[0]) and named[0].endswith("removed, the pack starts over")
    assert not any("resumed" in line for line in lines), lines
    assert not state.exists()
    assert run_pack(job, log=lines.append).trained == 0                # finished: a re-run has nothing to do
