"""The inline executor running several pack chains at once (threads; CUDA streams on a GPU), how
a Ray pack's lines reach the driver, and what the driver says when Ray kills a pack for memory."""
import dataclasses
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from partfer.data_prep.prepared import load_prepared
from partfer.orchestrator.config import ConfigError, load_config, packs_per_gpu
from partfer.orchestrator.execution.executors import (PackMessages, explain_oom, pack_memory_bytes, packs_that_fit,
                                                      run_inline)
from partfer.orchestrator.execution.plan import build_plan
from partfer.orchestrator.execution.progress import Progress

TINY = {"image_size": 32, "train.steps_per_epoch": None, "networks": ["el", "baseline"], "parts": ["mouth", "nose"], "members": 2,
        "train.twin_selection": None,
        "datasets.jaffe.epochs": {"baseline": 3, "landmark": 2, "head": 2, "finetune": 2}}


def _plan(prepared_dir, storage):
    cfg = load_config("demo", TINY)
    return build_plan(cfg, {"jaffe": load_prepared(prepared_dir)}, str(storage), "cpu", "t", pack_size=8)


def _outputs(plan) -> dict[str, object]:
    out = {}
    for chain in plan.chains:
        for job in chain:
            for m in job.models:
                out[f"{m.key}/ckpt"] = torch.load(f"{m.out_dir}/checkpoint.pt", weights_only=True)
                if job.stage.stage != "landmark":
                    out[f"{m.key}/pred"] = pq.read_table(f"{m.out_dir}/predictions.parquet").to_pandas()
    return out


@pytest.mark.slow
def test_concurrent_chains_give_the_sequential_results(tiny_prepared, tmp_path):
    seq, par = _plan(tiny_prepared, tmp_path / "seq"), _plan(tiny_prepared, tmp_path / "par")
    assert len(par.chains) == 2 and len(par.chains[0]) == 3      # EL's three stages, Baseline's one
    log = io.StringIO()
    n = sum(len(c) for c in par.chains)
    run_inline(seq.chains, Progress(0, 0, n, stream=io.StringIO()))
    results = run_inline(par.chains, Progress(0, 0, n, stream=log), concurrent=2)
    assert len(results) == n and all(r.trained for r in results)
    # both chains were under way at once: Baseline started before EL's last stage did
    lines = log.getvalue().splitlines()
    first_baseline = next(i for i, s in enumerate(lines) if "start" in s and "baseline" in s)
    el_finetune = next(i for i, s in enumerate(lines) if "start" in s and "finetune" in s)
    assert first_baseline < el_finetune
    a, b = _outputs(seq), _outputs(par)
    assert a.keys() == b.keys()
    for key in a:
        if key.endswith("/ckpt"):
            for name in a[key]:
                assert torch.equal(a[key][name], b[key][name]), f"{key} {name}"
        else:
            assert [list(p) for p in a[key]["probs"]] == [list(p) for p in b[key]["probs"]], key


def test_a_failing_chain_raises_after_the_others_stop(tiny_prepared, tmp_path):
    plan = _plan(tiny_prepared, tmp_path)
    broken = dataclasses.replace(plan.chains[1][0], prepared_dir=str(tmp_path / "missing"))
    chains = [plan.chains[0], [broken]]
    with pytest.raises(Exception, match="missing"):
        run_inline(chains, Progress(0, 0, 4, stream=io.StringIO()), concurrent=2)


def test_packs_per_gpu_from_the_gpu_share():
    assert packs_per_gpu(load_config("paper")) == 3            # gpus_per_pack 0.33
    assert packs_per_gpu(load_config("paper", {"train.gpus_per_pack": 1.0})) == 1
    assert packs_per_gpu(load_config("paper", {"train.gpus_per_pack": 0.25})) == 4
    with pytest.raises(ConfigError, match="gpus_per_pack"):
        load_config("paper", {"train.gpus_per_pack": 2})


def test_gpu_memory_estimate_and_the_out_of_memory_message(tiny_prepared, tmp_path):
    job = _plan(tiny_prepared, tmp_path).chains[0][0]
    # the measured H200 peak of a 50-model pack at 160 px and batch 32 (BENCHMARKS.md)
    paper_sized = dataclasses.replace(job, image_size=160, models=tuple(job.models[:1]) * 50,
                                      stage=dataclasses.replace(job.stage, batch_size=32))
    assert abs(pack_memory_bytes(paper_sized) / 2**20 - 14_440) < 1
    assert packs_that_fit([[paper_sized]], 3) == 3          # a CPU job: memory is not the GPU's
    err = explain_oom(paper_sized, RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\\nmore"))
    assert "train.gpus_per_pack=1" in str(err) and "14.1 GiB" in str(err) and "Tried to allocate" in str(err)


@pytest.mark.ray
def test_a_packs_lines_reach_the_queue_in_order_and_its_cpus_stay_its_own(shared_ray):
    """A pack holding both CPUs sends 40 lines. A task that needs a CPU must not start before the
    last is sent: a put that waits would lend the pack's CPUs to it (Ray frees a blocked task's
    resources), and the packs would outnumber the cores. After flush() every line is queued, in order."""
    from ray.util.queue import Queue
    ray = shared_ray
    sink = Queue(actor_options={"num_cpus": 0})

    @ray.remote(num_cpus=2)
    def pack():
        messages = PackMessages(sink, 7)
        for i in range(40):
            messages.send("log", f"line {i}")
            time.sleep(0.02)
        last_sent = time.time()
        messages.flush()
        return last_sent

    @ray.remote(num_cpus=1)
    def other():
        return time.time()

    first = pack.remote()
    got = [sink.get(timeout=60)]                 # the pack runs
    second = other.remote()
    last_sent, started = ray.get([first, second])
    got += sink.get_nowait_batch(sink.qsize())
    ray.kill(sink.actor)
    assert started >= last_sent
    assert got == [(7, "log", f"line {i}") for i in range(40)]


@pytest.mark.ray
def test_when_the_queue_is_lost_the_lines_not_known_to_have_arrived_go_to_stdout(shared_ray, capsys):
    from ray.util.queue import Queue
    sink = Queue(actor_options={"num_cpus": 0})
    messages = PackMessages(sink, 0)
    messages.send("log", "arrived")
    messages.flush()
    shared_ray.kill(sink.actor)
    messages.send("log", "after 1")
    messages.send("epoch", 1, {})
    messages.send("log", "after 2")
    messages.flush()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("pack messages no longer reach the driver (")
    assert out[1:] == ["after 1", "after 2"]


_KILLED_FOR_MEMORY = """
import time
import ray
from partfer.orchestrator.execution.cluster import connect
from partfer.orchestrator.execution.executors import failure_line
connect()

@ray.remote(max_retries=5, retry_exceptions=False)
def pack():
    time.sleep(60)

try:
    ray.get(pack.remote(), timeout=120)
    print("FINISHED")
except ray.exceptions.GetTimeoutError:
    print("STILL RETRYING")
except ray.exceptions.RayError as exc:
    print("LINE", failure_line("jaffe landmark pack (10 models)", exc))
ray.shutdown()
"""


@pytest.mark.slow
@pytest.mark.ray
def test_a_pack_killed_for_memory_is_retried_a_bounded_number_of_times_then_says_how_to_resume(tmp_path):
    """A real private Ray whose memory monitor kills any running task (its threshold set to 1% of the
    machine's memory, which is always in use), so no memory is eaten. Ray alone retries for ever."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_memory_usage_threshold="0.01", RAY_memory_monitor_refresh_ms="100", HOME=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", _KILLED_FOR_MEMORY], cwd=Path(__file__).resolve().parents[3],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    (line,) = [text for text in run.stdout.splitlines() if text.startswith(("LINE", "FINISHED", "STILL"))]
    assert line == ("LINE jaffe landmark pack (10 models): killed for memory by Ray's memory monitor (after 2 "
                    "retries); re-run the same command to resume: finished models are kept (to need less memory "
                    "at once: a smaller train.pack_size, or more train.cpus_per_pack so fewer packs share the "
                    "machine)")
