"""Running `run_all.py` as a user would, in a child process, for the end-to-end tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def child_env() -> dict:
    """A private local Ray for the child: no auth token, no cluster address inherited."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    return env


def run_all(*args, cwd, timeout: int = 1500) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run_all.py"), *args], cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_run_all(*args, cwd, log: Path) -> subprocess.Popen:
    """Started in its own session (so the test can kill its whole process group); Ray forwards its
    workers' prints to the driver's stdout, so stdout and stderr both go to `log`."""
    return subprocess.Popen([sys.executable, str(REPO / "run_all.py"), *args], cwd=cwd, env=child_env(),
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def report_path(stdout: str) -> Path:
    """The report.html path run_all.py prints last (Ray may forward a worker's late line after it)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.strip().endswith("report.html"):
            return Path(line.strip())
    raise AssertionError(f"no report path in the output: {stdout[-2000:]}")
