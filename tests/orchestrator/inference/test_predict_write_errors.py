"""A disk that refuses a write (full, or over the size a process may write) while predictions,
resumable states or other files are written: one line naming the file and the system's reason,
and nothing half-written.

Both refusals are real, from the kernel: /dev/full answers every write with ENOSPC ("No space
left on device"), and a process whose RLIMIT_FSIZE is small gets EFBIG ("File too large") from
the write that would pass it, the very write() a full disk fails. Each runs in a child process
(`python -m partfer`), as a user would."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def _limit(n_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))
    return apply


def _partfer(*argv: str, stdout=subprocess.PIPE, preexec_fn=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "partfer", *argv], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=300, env=ENV, preexec_fn=preexec_fn, cwd=cwd)


@pytest.fixture
def face(tmp_path) -> Path:
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    return path


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".tmp-" in p.name]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_predictions_to_a_full_standard_output_are_one_line(untrained_model, face):
    with open("/dev/full", "w") as full:
        done = _partfer("predict", "--model", str(untrained_model), str(face), "--device", "cpu", "--no-progress",
                        stdout=full)
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("partfer predict: error: cannot write the predictions to standard output "
                           "(No space left on device)\n")


@pytest.mark.slow
def test_predictions_over_the_size_limit_are_one_line_and_leave_no_file(untrained_model, face, tmp_path):
    out = tmp_path / "preds" / "p.parquet"
    done = _partfer("predict", "--model", str(untrained_model), str(face), "--device", "cpu", "--no-progress",
                    "--out", str(out), preexec_fn=_limit(2048))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"partfer predict: error: cannot write {out}: ") and done.stderr.count("\n") == 1
    assert "File too large" in done.stderr, done.stderr
    assert not out.exists() and not _temporaries(out.parent)


@pytest.mark.slow
def test_a_pack_state_over_the_size_limit_names_the_state_file_and_leaves_nothing(tmp_path):
    state = tmp_path / "packs" / "p" / "state.pt"
    code = ("import torch\n"
            "from partfer.orchestrator.storage.store import torch_save_atomic\n"
            "try:\n"
            f"    torch_save_atomic({{'net': torch.zeros(100_000)}}, {str(state)!r})\n"
            "except OSError as err:\n"
            "    print(err.errno, err.filename, err.strerror, sep='|')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=ENV,
                          preexec_fn=_limit(64 * 1024))
    assert done.stdout.strip() == f"27|{state}|File too large", done.stdout + done.stderr
    assert not state.exists() and not _temporaries(tmp_path)
