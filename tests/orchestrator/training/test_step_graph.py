"""The pack stepper (orchestrator.training.step_graph): eager on a CPU, CUDA graphs refused there clearly.

The capture itself needs a GPU: `bench/train_throughput.py --check` compares graphed with eager
steps on the device (bit-identical losses and parameters expected) and times the *-graph variants.
"""
import dataclasses

import pytest
import torch

from partfer.orchestrator.training.step_graph import PackStepper, make_capturable
from partfer.orchestrator.training.train import run_pack
from tests.orchestrator.training.test_train import _chain


def _adam(capturable: bool):
    p = torch.nn.Parameter(torch.ones(3))
    return torch.optim.Adam([p], lr=0.1, capturable=capturable), p


def test_graphs_are_refused_without_a_capturable_optimizer_or_a_cuda_pack():
    opt, _ = _adam(capturable=False)
    with pytest.raises(ValueError, match="capturable=True"):
        PackStepper(lambda plan: None, torch.Generator(), opt, graphs=True)
    opt, _ = _adam(capturable=True)
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA pack.*cpu"):
        PackStepper(lambda plan: None, torch.Generator(), opt, graphs=True)


def test_the_eager_stepper_runs_every_step_with_its_plan():
    opt, _ = _adam(capturable=False)
    seen = []
    stepper = PackStepper(seen.append, torch.Generator(), opt)
    plans = ["a", "a", "b", "a"]
    for plan in plans:
        stepper.step(plan)
    assert seen == plans
    assert stepper.counts() == {"step_plans": 3, "eager_steps": 4, "graph_captures": 0, "graph_replays": 0}


def test_make_capturable_converts_a_state_written_by_an_eager_run():
    opt, p = _adam(capturable=False)
    p.grad = torch.ones(3)
    opt.step()
    saved = opt.state_dict()
    resumed, q = _adam(capturable=True)
    resumed.load_state_dict(saved)                    # the checkpoint's groups say capturable=False
    assert not resumed.param_groups[0]["capturable"]
    make_capturable(resumed)
    assert resumed.param_groups[0]["capturable"]
    step = resumed.state[q]["step"]
    assert step.device == q.device and step.dtype == torch.float32 and float(step) == 1.0


@pytest.mark.slow
def test_run_pack_with_cuda_graphs_on_a_cpu_says_so_and_trains_as_without(tiny_prepared, tmp_path):
    checkpoints, logs = {}, {}
    for graphs in (False, True):
        job = dataclasses.replace(_chain(tiny_prepared, tmp_path / str(graphs))[0], cuda_graphs=graphs)
        lines = []
        result = run_pack(job, log=lines.append)
        assert result.trained == 2 and result.graph_captures == result.graph_replays == 0
        checkpoints[graphs] = [torch.load(f"{m.out_dir}/checkpoint.pt", weights_only=True) for m in job.models]
        logs[graphs] = lines
    assert any("train.cuda_graphs needs CUDA" in line for line in logs[True])
    assert not any("cuda_graphs" in line for line in logs[False])
    for a, b in zip(checkpoints[False], checkpoints[True]):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
