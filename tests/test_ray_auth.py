"""Ray token authentication stays on for clusters: the launcher configs make and hand out a token,
partfer's command line leaves a client's auth settings alone, and a real token-auth head refuses a
client without the token while partfer's connect with it works. Only the private local Ray that
partfer starts itself runs without auth."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import shutil
from pathlib import Path

import pytest
import yaml
from local_ray import RAY, free_ports, left_running, stop_head

from partfer.cli import main

REPO = Path(__file__).resolve().parent.parent
TOKEN_FILE = "~/.ray/auth_token"


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster.local.yaml"])
def test_launcher_configs_start_every_node_with_a_shared_token(name):
    from ray.autoscaler._private.util import prepare_config, validate_config
    text = (REPO / name).read_text()
    assert "RAY_AUTH_MODE=disabled" not in text
    config = prepare_config(yaml.safe_load(text))
    validate_config(config)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if " ray start" in c or "/ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), config[key]
    assert any("get-auth-token --generate" in c and TOKEN_FILE in c for c in config["head_setup_commands"])
    assert TOKEN_FILE in config["cluster_synced_files"]          # head -> every worker it starts
    assert any("export RAY_AUTH_MODE=token" in c for c in config["setup_commands"])   # `ray submit`'s shell


def test_the_command_line_leaves_the_auth_mode_to_the_cluster(monkeypatch, capsys):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert main(["describe", "--image-size", "32"]) == 0
    capsys.readouterr()
    assert "RAY_AUTH_MODE" not in os.environ


_CLIENT = """
from partfer.cli import main
main(["describe", "--image-size", "32"])          # what every partfer command goes through first
import ray
from partfer.orchestrator.execution.cluster import connect
info = connect()
print("CONNECTED", info.started_here, ray.get(ray.remote(lambda: 40 + 2).remote()))
"""


@pytest.mark.slow
@pytest.mark.ray
def test_a_token_auth_head_refuses_a_client_without_the_token_and_serves_partfer_with_it(tmp_path):
    temp_dir = tempfile.mkdtemp(prefix="pfauth", dir="/tmp")      # short: Ray's socket paths live here
    with_token, without = tmp_path / "home-with", tmp_path / "home-without"
    (with_token / ".ray").mkdir(parents=True)
    without.mkdir()
    (with_token / ".ray" / "auth_token").write_text("partfer-test-" + os.urandom(16).hex())
    gcs, client, agent_http, agent_grpc, metrics, env_agent = free_ports(6)
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    try:
        start = subprocess.run(
            [RAY, "start", "--head", f"--port={gcs}", f"--ray-client-server-port={client}", "--num-cpus=1",
             "--include-dashboard=false", f"--dashboard-agent-listen-port={agent_http}",
             f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
             f"--runtime-env-agent-port={env_agent}", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
            env=dict(base, HOME=str(with_token), RAY_AUTH_MODE="token"), capture_output=True, text=True,
            timeout=120)
        assert start.returncode == 0, start.stdout[-3000:] + start.stderr[-3000:]
        address = f"127.0.0.1:{gcs}"

        def client(home: Path, **extra: str) -> subprocess.CompletedProcess:
            env = dict(base, HOME=str(home), RAY_ADDRESS=address, **extra)
            return subprocess.run([sys.executable, "-c", _CLIENT], cwd=REPO, env=env, capture_output=True,
                                  text=True, timeout=180)

        refused = client(without)
        assert refused.returncode != 0 and "CONNECTED" not in refused.stdout, refused.stdout[-2000:]
        wrong = client(without, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="not-the-token-" + "0" * 20)
        assert wrong.returncode != 0 and "CONNECTED" not in wrong.stdout
        # the token in ~/.ray/auth_token and RAY_AUTH_MODE=token, as the launcher leaves a node's shell
        served = client(with_token, RAY_AUTH_MODE="token")
        assert served.returncode == 0, served.stdout[-2000:] + served.stderr[-3000:]
        assert "CONNECTED False 42" in served.stdout
    finally:
        stop_head(temp_dir)
        left = left_running(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert left == [], f"Ray processes of the test head survived: {left}"
