"""Local Ray heads and nodes that a test starts itself (`ray start` with its own temp dir and
ports), found and stopped by their own processes: never `ray stop`, which ends every Ray of the
user, other runs' included."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import ray  # noqa: F401  (first: it puts its bundled psutil on sys.path)
import psutil

VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def processes_of(temp_dir: str) -> list[psutil.Process]:
    """A head's or node's processes: those whose command line names its unique temp dir (or a
    session path under it), and their descendants (workers, a job's driver)."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if temp_dir in " ".join(proc.info["cmdline"] or ()):
                found[proc.pid] = proc
                found.update((c.pid, c) for c in proc.children(recursive=True))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    found.pop(os.getpid(), None)
    return list(found.values())


def stop_head(temp_dir: str) -> None:
    """Stop only this head or node, by its own processes: terminate, then kill what is left."""
    procs = processes_of(temp_dir)
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=20)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)


def left_running(*temp_dirs: str) -> list[int]:
    """Pids of these heads' processes still alive (zombies are not)."""
    return [p.pid for d in temp_dirs for p in processes_of(d)
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
