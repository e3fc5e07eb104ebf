"""Where a run's outputs live, how they are keyed, and how they are written atomically.

Layout under the storage root:
  prepared/<dataset>-<hash>/            data_prep's output
  models/<dataset>/<network>-<member>/fold<k>/<stage>-<key12>/   one finished model stage
  packs/<pack-hash>/state.pt            resumable state of a pack in progress
  runs/<run_id>/                        plan.json, config.yaml, tables, figures, report
A model directory appears only complete (built aside, then renamed), so "exists" means "done".
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

DONE_FILE = "meta.json"


def stable_hash(obj: Any, length: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def torch_save_atomic(obj: Any, path: str | Path) -> None:
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def model_dir(root: str, dataset: str, network: str, member: str, fold: int, stage: str, key: str) -> str:
    return str(Path(root) / "models" / dataset / f"{network}-{member}" / f"fold{fold}" / f"{stage}-{key[:12]}")


def is_done(directory: str) -> bool:
    return (Path(directory) / DONE_FILE).is_file()


def publish_dir(build: Path, final: str) -> None:
    """Move a fully written directory into place; a stale unfinished one is replaced."""
    final_path = Path(final)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    if final_path.exists():
        if is_done(final):
            shutil.rmtree(build, ignore_errors=True)     # someone (a retried task) finished first
            return
        shutil.rmtree(final_path)
    os.replace(build, final_path)


def build_dir_for(final: str) -> Path:
    final_path = Path(final)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    build = final_path.with_name(f".{final_path.name}.tmp-{uuid.uuid4().hex[:8]}")
    build.mkdir()
    return build
