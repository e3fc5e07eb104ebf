"""Ray token authentication stays on for clusters: the launcher configs make and hand out a token,
partfer's command line leaves a client's auth settings alone, and a real token-auth head refuses a
client without the token while partfer's connect with it works. The private local Ray that
partfer starts itself has a token of its own: a client on the machine's network address is refused."""
from __future__ import annotations

import os
import socket
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


_PRIVATE_RAY = """
import sys
import ray
if sys.argv[1] == "connect":
    from partfer.orchestrator.execution.cluster import connect
    connect()
else:
    from partfer.data_prep.pipeline import ensure_ray
    ensure_ray()
print("GCS", ray.get_runtime_context().gcs_address, ray.get(ray.remote(lambda: 40 + 2).remote()), flush=True)
sys.stdin.readline()                                   # serve until the test is done
ray.shutdown()
"""
_NO_TOKEN_CLIENT = """
import sys
import ray
ray.init(address=sys.argv[1])
print("CONNECTED", ray.get(ray.remote(lambda: 40 + 2).remote()))
"""


def network_address() -> str | None:
    """This machine's own IPv4 address other than the loopback one, None when it has none."""
    try:
        found = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.SubprocessError):
        found = []
    if not found:
        try:
            found = socket.gethostbyname_ex(socket.gethostname())[2]
        except OSError:
            found = []
    return next((a for a in found if ":" not in a and not a.startswith("127.")), None)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("starter", ["connect", "ensure_ray"])    # partfer run/tune, and partfer prep
def test_the_private_local_ray_refuses_a_client_without_its_token_on_the_network_address(tmp_path, starter):
    address = network_address()
    if address is None:
        pytest.skip("this machine has no network address but the loopback one: nothing to connect to")
    home, other_home = tmp_path / "home", tmp_path / "other"
    home.mkdir()
    other_home.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    log = tmp_path / "server.log"
    # RAY_AUTH_MODE=disabled as the Makefile and tests set it: the private Ray must close itself anyway
    server = subprocess.Popen([sys.executable, "-c", _PRIVATE_RAY, starter], cwd=REPO, text=True,
                              env=dict(base, HOME=str(home), RAY_AUTH_MODE="disabled"),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(log, "w"))
    try:
        ready = server.stdout.readline().split()
        assert ready[:1] == ["GCS"] and ready[2:] == ["42"], log.read_text()[-3000:]
        port = ready[1].rsplit(":", 1)[1]
        client = subprocess.run([sys.executable, "-c", _NO_TOKEN_CLIENT, f"{address}:{port}"], cwd=REPO,
                                env=dict(base, HOME=str(other_home), RAY_gcs_server_port_wait_time_s="3"),
                                capture_output=True, text=True, timeout=180)
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
    assert client.returncode != 0 and "CONNECTED" not in client.stdout, client.stdout[-2000:]
    assert "Authentication token is missing or incorrect" in client.stderr, client.stderr[-3000:]
    assert not (home / ".ray").exists()                 # the token lived in the processes' environment
