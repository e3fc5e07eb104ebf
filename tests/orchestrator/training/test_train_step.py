"""A training step issues GPU work without waiting for it (orchestrator.training.train.train_step)."""
import math

import pytest
import torch

from partfer.data_prep.prepared import load_prepared
from host_reads import HostReads
from partfer.orchestrator.config import load_config
from partfer.orchestrator.execution.plan import build_plan
from partfer.orchestrator.training.train import run_pack


def _pack(prepared_dir, storage, networks, epochs, **over):
    cfg = load_config("demo", {"image_size": 32, "train.steps_per_epoch": None, "train.twin_selection": None, "networks": networks, "parts": ["mouth", "nose"],
                               "datasets.jaffe.epochs": {s: epochs for s in ("baseline", "landmark", "head",
                                                                             "finetune")}, **over})
    plan = build_plan(cfg, {"jaffe": load_prepared(prepared_dir)}, str(storage), "cpu", "t", pack_size=8)
    return plan.chains[0][0]


@pytest.mark.slow
def test_no_step_reads_the_device_back(tiny_prepared, tmp_path):
    # Models that stop at different epochs (so stopped slices are written back after each step, and
    # the pack is cut down to its active models), on both stage kinds: classification (Baseline)
    # and landmark regression (its targets follow the moved landmarks).
    baseline = _pack(tiny_prepared, tmp_path / "b", ["baseline"], 20, members=2,
                     **{"train.patience": 3, "train.lr.baseline": 1e-3})
    landmark = _pack(tiny_prepared, tmp_path / "l", ["el"], 3)
    for job in (baseline, landmark):
        logs = []
        with HostReads("train_step") as reads, HostReads("evaluate") as evals:
            result = run_pack(job, log=logs.append)
        steps = math.ceil(sum(len(m.train) for m in job.models) / len(job.models) / job.stage.batch_size)
        assert result.trained == len(job.models) and reads.calls == steps * max(result.epochs)
        assert not reads.found_after_first, f"{job.stage.stage} step reads values back: {reads.found}"
        # early stopping's validation pass, every epoch: one copy back (loss and accuracy together),
        # then the test pass (its outputs are read per chunk)
        assert evals.calls == max(result.epochs) + 1
        per_call = [[name for name, _, n in evals.found if n == call] for call in range(1, evals.calls)]
        assert per_call == [["cpu"]] * max(result.epochs), evals.found
        if job is baseline:       # the situations named above did arise
            assert len(set(result.epochs)) > 1 and any("computing only those" in line for line in logs)


def test_the_guard_sees_a_read_back():
    # The same watch over a step that asks for values (as the trainer's restore of stopped models
    # once did at every step: a host index copied per tensor) reports each, from the second call on.
    def train_step():
        loss = torch.ones(3).sum()
        x = torch.arange(4)
        x[x > 1] = 0                               # a boolean mask: a nonzero inside, not seen as a call
        return float(loss), torch.zeros(2).to("cpu"), x.nonzero(), x[x == 0], x[torch.tensor(1)]

    with HostReads("train_step") as reads:
        train_step()
        torch.ones(2).tolist()                     # outside the watched function: not reported
        train_step()
    # (the integer-tensor index of the last item builds its tensor from host data: `tensor`)
    assert [name for name, _, _ in reads.found] == ["__setitem__", "__float__", "to", "nonzero", "__getitem__",
                                                    "tensor"] * 2
    assert all(place.startswith("test_train_step.py:") for _, place, _ in reads.found)
    assert reads.calls == 2 and len(reads.found_after_first) == 6
