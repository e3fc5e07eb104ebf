"""The `train` executor on a two-node Ray: two `ray start` processes on this machine (their own temp
dirs and ports, one CPU each), a tiny paper run through `run_all.py` whose two-pack Train runs put
one worker on each node. Both nodes are stopped by their own process ids, never by `ray stop`."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from local_ray import RAY, VENV_BIN, free_ports, left_running, stop_head
from test_cluster import REPO

from partfer.orchestrator.execution.cluster import find_local_cluster


def _start_node(temp_dir: str, env: dict, head: str | None = None) -> subprocess.CompletedProcess:
    agent_http, agent_grpc, metrics, env_agent, client = free_ports(5)
    args = [RAY, "start", "--num-cpus=1", "--num-gpus=0", f"--temp-dir={temp_dir}", "--disable-usage-stats",
            f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={env_agent}"]
    if head is None:
        (gcs_port,) = free_ports(1)
        args += ["--head", f"--port={gcs_port}", f"--ray-client-server-port={client}", "--include-dashboard=false"]
    else:
        args += [f"--address={head}"]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def _ran_packs(temp_dir: str) -> bool:
    """Whether a Train worker of this node trained a pack: its log holds the worker's pack lines."""
    return any("partfer Train worker" in log.read_text(errors="replace")
               for log in Path(temp_dir).glob("session_*/logs/worker-*.out"))


@pytest.mark.slow
@pytest.mark.ray
def test_tiny_paper_on_two_nodes_with_the_train_executor():
    head_tmp = tempfile.mkdtemp(prefix="pfth", dir="/tmp")        # short: Ray's socket paths live here
    node_tmp = tempfile.mkdtemp(prefix="pftn", dir="/tmp")
    store = tempfile.mkdtemp(prefix="pftstore")
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("RAY_ADDRESS", None)
    try:
        head = _start_node(head_tmp, env)
        assert head.returncode == 0, head.stdout[-3000:] + head.stderr[-3000:]
        address = find_local_cluster(head_tmp)
        assert address is not None
        node = _start_node(node_tmp, env, head=address)
        assert node.returncode == 0, node.stdout[-3000:] + node.stderr[-3000:]

        run = subprocess.run(
            [sys.executable, str(REPO / "run_all.py"), "--config", "tests/configs/tiny.yaml", "--executor", "train",
             "--out", store, "--shared-storage", "--no-report", "--set", "members=1", "--set", "parts=[mouth]",
             "--set", "epochs_scale=0.3", "--set", "train.pack_size_cpu=3", "--set", "train.workers_per_run=2",
             "--set", "synthetic={jaffe: {subjects: 3, per_class: 6, seed: 0, size: 96}}"],
            cwd=REPO, env=dict(env, RAY_ADDRESS=address), capture_output=True, text=True, timeout=1200)
        out = run.stdout + run.stderr
        assert run.returncode == 0, out[-5000:]
        assert "2 node(s)" in out
        assert _ran_packs(node_tmp) and _ran_packs(head_tmp), "the Train workers did not use both nodes"
        plans = list(Path(store).glob("runs/*/plan.json"))
        assert len(plans) == 1
        settings = json.loads(plans[0].read_text())["settings"]
        assert settings["status"] == "finished" and settings["executor"] == "train"
        assert settings["trained_model_stages"] == 3 + 2 * 3 * 3        # Baseline 3, FTL + EL 6 x 3 stages
        assert not any(Path(store).glob("train_runs/*/checkpoint_*")), "spent Train checkpoints were kept"
    finally:
        stop_head(node_tmp)
        stop_head(head_tmp)
        left = left_running(head_tmp, node_tmp)
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(node_tmp, ignore_errors=True)
    assert left == [], f"Ray processes of the test nodes survived: {left}"
