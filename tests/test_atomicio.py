"""The one atomic-write module: unique temporary names (threads of one process do not collide),
tolerant publishing of a folder by racing processes, and leftovers of killed writers cleaned by the
next writer of the same target, without touching a live writer's."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from partfer import atomicio
from partfer.orchestrator.storage.store import DONE_FILE, build_dir_for, publish_dir

REPO = Path(__file__).resolve().parent.parent


def test_threads_of_one_process_write_one_file_without_colliding(tmp_path):
    target = tmp_path / "report.md"
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for j in range(40):
                atomicio.write_text(target, f"writer {i} round {j}\n" * 50)
        except BaseException as err:       # reported below
            errors.append(err)
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    lines = set(target.read_text().splitlines())
    assert len(lines) == 1                               # one writer's whole content
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def _publish_once(final: str, barrier, tag: str) -> str:
    build = build_dir_for(final)
    (build / "checkpoint.pt").write_bytes(tag.encode() * 1000)
    (build / DONE_FILE).write_text(json.dumps({"by": tag}))
    barrier.wait()
    try:
        publish_dir(build, final)
    except BaseException as err:                         # the race the test looks for
        return f"{type(err).__name__}: {err}"
    return ""


def _racer(root: str, rounds: int, barrier, i: int, out) -> None:
    problems = [p for r in range(rounds) if (p := _publish_once(f"{root}/m{r}", barrier, f"p{i}"))]
    out.put(problems)


def test_processes_racing_to_publish_one_model_all_succeed_and_leave_no_temp(tmp_path):
    ctx = multiprocessing.get_context("fork")
    n, rounds = 6, 25
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(str(tmp_path), rounds, barrier, i, out)) for i in range(n)]
    for p in procs:
        p.start()
    problems = [p for _ in procs for p in out.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
    assert not problems, problems[:3]
    for r in range(rounds):
        final = tmp_path / f"m{r}"
        by = json.loads((final / DONE_FILE).read_text())["by"]
        assert (final / "checkpoint.pt").read_bytes() == by.encode() * 1000   # one writer's whole folder
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"m{r}" for r in range(rounds))


def test_an_unfinished_folder_is_replaced_and_a_finished_one_kept(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "half.bin").write_bytes(b"x")                # a crashed writer's, no meta.json
    build = build_dir_for(str(final))
    (build / DONE_FILE).write_text("{}")
    publish_dir(build, str(final))
    assert sorted(p.name for p in final.iterdir()) == [DONE_FILE]
    other = build_dir_for(str(final))
    (other / DONE_FILE).write_text('{"late": true}')
    publish_dir(other, str(final))
    assert (final / DONE_FILE).read_text() == "{}" and not other.exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_dead_writers_are_cleaned_and_live_ones_kept(tmp_path):
    final = tmp_path / "model"
    host = atomicio._host_tag()
    dead = tmp_path / f".model{atomicio.TEMP_TAG}{host}-{_dead_pid()}-aaaa"
    alive = tmp_path / f".model{atomicio.TEMP_TAG}{host}-{os.getppid()}-bbbb"
    remote_recent = tmp_path / f".model{atomicio.TEMP_TAG}0000ffff-1-cccc"
    remote_old = tmp_path / f".model{atomicio.TEMP_TAG}0000ffff-2-dddd"
    other_target = tmp_path / f".other{atomicio.TEMP_TAG}{host}-{_dead_pid()}-eeee"
    for folder in (dead, alive, remote_recent, remote_old, other_target):
        folder.mkdir()
        (folder / "part").write_bytes(b"x")
    old = time.time() - 3 * 24 * 3600
    for path in (remote_old / "part", remote_old):
        os.utime(path, (old, old))
    assert atomicio.clean_stale(final) == 2
    assert not dead.exists() and not remote_old.exists()
    assert alive.exists() and remote_recent.exists() and other_target.exists()


_KILLED_WRITER = """
import os, signal, sys
from partfer.orchestrator.storage.store import build_dir_for
build = build_dir_for(sys.argv[1])
(build / "checkpoint.pt").write_bytes(b"half")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_folder_left_by_a_sigkilled_writer_is_cleaned_by_the_next_one(tmp_path):
    final = tmp_path / "models" / "m"
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(final)], cwd=tmp_path)
    assert proc.returncode == -signal.SIGKILL
    assert [p for p in final.parent.iterdir() if atomicio.is_temporary(p.name)], "the kill left nothing"
    build = build_dir_for(str(final))
    (build / DONE_FILE).write_text("{}")
    publish_dir(build, str(final))
    assert [p.name for p in final.parent.iterdir()] == ["m"]
