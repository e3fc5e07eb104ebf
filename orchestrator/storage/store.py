"""Where a run's outputs live, how they are keyed, and how they are written atomically.

Layout under the storage root:
  prepared/<dataset>-<hash>/            data_prep's output
  models/<dataset>/<network>-<member>/fold<k>/<stage>-<key12>/   one finished model stage
  packs/<pack-hash>/state.pt            resumable state of a pack in progress
  runs/<run_id>/                        plan.json, config.yaml, tables, figures, report
A model directory appears only complete (built aside, then renamed), so "exists" means "done".

The root is a local path (a disk, or NFS that every node mounts) or an object-store URI
(`s3://bucket/prefix`, `gs://...`, `file:///...`). With a URI, every function here that takes a
location takes a URI too: writes are staged on local disk and uploaded (orchestrator.storage.remote), a
model directory's meta.json last, so "meta.json exists" still means "done"; reads go through this
node's cache (`local_file`, `local_dir`). The driver keeps its own copy of the run directory in
that cache (`push_run` publishes it, `pull_run` brings a run back from a URI), through the run's
Store (orchestrator.storage.root), which callers ask instead of telling a path from a URI.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from partfer import atomicio
from partfer.orchestrator.run_files import CHECKPOINT_FILE, DONE_FILE
from partfer.orchestrator.storage import remote
from partfer.orchestrator.storage.remote import basename, is_uri, join, relative  # noqa: F401  (re-exported)


def stable_hash(obj: Any, length: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    if is_uri(path):
        remote.put_bytes(str(path), data)
        return
    atomicio.write_bytes(path, data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def torch_save_atomic(obj: Any, path: str | Path) -> None:
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(location: str, log: Callable[[str], None]) -> dict | None:
    """A pack's resumable state, or None (start over) when there is none or it cannot be used.

    The state is only a cache, and whoever can write the store can write it, so it is read with
    torch's weights-only unpickler (tensors and plain containers; a pickle that would run code is
    refused, nothing of it runs); a file that fails to load is named in the log and removed, so the
    next run does not trip over it again."""
    import torch
    saved_file = local_file(location, fresh=True, missing_ok=True)     # a URI: this node's copy
    if saved_file is None:
        return None
    try:
        saved = torch.load(saved_file, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict):
            raise ValueError(f"holds a {type(saved).__name__}, not a dict")
    except Exception as err:     # refused by the unpickler, truncated, not a torch file ...
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        log(f"resumable state {location} cannot be used ({type(err).__name__}: {reason}); "
            f"removed, the pack starts over")
        remove_file(location)
        return None
    return saved


def remove_file(location: str) -> None:
    """Delete a file at a path or URI (absent: nothing to do), with this node's copy of a URI."""
    if is_uri(location):
        remote.remove(location)
    else:
        Path(location).unlink(missing_ok=True)


def safe_relative(rel: str, what: str) -> str:
    """`rel` when it is a relative path that stays under its root (no absolute path, no `..`):
    locations read from a store's files (plan.json, model.json) never point outside it."""
    text = str(rel).replace("\\", "/")
    if not text or text.startswith("/") or is_uri(text) or ".." in text.split("/"):
        raise ValueError(f"{what}: {rel!r} is not a relative path inside its folder")
    return str(rel)


def model_dir(root: str, dataset: str, network: str, member: str, fold: int, stage: str, key: str) -> str:
    return join(root, "models", dataset, f"{network}-{member}", f"fold{fold}", f"{stage}-{key[:12]}")


def is_done(directory: str) -> bool:
    if is_uri(directory):
        return remote.is_done(directory, DONE_FILE)
    return (Path(directory) / DONE_FILE).is_file()


def scan_done(root: str) -> None:
    """Learn which model directories under a URI root are done, in one listing (is_done then
    asks no more questions about them); nothing to do for a local root."""
    if is_uri(root):
        remote.scan_done(join(root, "models"), DONE_FILE)


def publish_dir(build: Path, final: str) -> None:
    """Move a fully written directory into place; a stale unfinished one is replaced, a finished
    one (another process or a retried task finished first) is kept and the build dropped.
    At a URI: uploaded with meta.json last (and kept as this node's copy)."""
    if is_uri(final):
        remote.publish_dir(build, final, DONE_FILE)
        return
    atomicio.publish_dir(build, final, lambda folder: (folder / DONE_FILE).is_file())


def build_dir_for(final: str) -> Path:
    """A fresh local directory in which to write what publish_dir will put at `final` (leftovers
    of killed builds of the same directory are removed on the way)."""
    if is_uri(final):
        return remote.staging_dir(final)
    return atomicio.make_temp_dir(final)


def stored(root: str, location: str) -> str:
    """A location the plan records relative to the storage root (absolute paths, URIs kept)."""
    return location if is_uri(location) or Path(location).is_absolute() else join(root, location)


def absolute(location: str, resolve: bool = False) -> str:
    """`location` as read from any working directory: a URI as it is, a local path made absolute
    (`resolve`: its links resolved too)."""
    if is_uri(location):
        return location
    return str(Path(location).resolve()) if resolve else os.path.abspath(location)


def check_readable(location: str) -> None:
    """StorageError, in one line, when the store holding a URI cannot be read (scheme,
    credentials, network); a local path has nothing to check."""
    if is_uri(location):
        remote.check(location, write=False)


def make_dirs(location: str) -> None:
    """Create a local folder and its parents; at a URI, folders need no creating."""
    if not is_uri(location):
        Path(location).mkdir(parents=True, exist_ok=True)


def exists(location: str) -> bool:
    """Whether the file exists (at its URI, not in this node's cache)."""
    return remote.exists(location) if is_uri(location) else Path(location).is_file()


def local_file(location: str, fresh: bool = False, missing_ok: bool = False) -> Path | None:
    """A local path to read the file at `location` from: the path itself, or this node's copy of
    a URI. A cached copy is reused unless `fresh` (files that change, such as a pack's state).
    Absent: None with `missing_ok`, else FileNotFoundError."""
    if is_uri(location):
        return remote.fetch_file(location, fresh=fresh, missing_ok=missing_ok)
    path = Path(location)
    if path.is_file():
        return path
    if missing_ok:
        return None
    raise FileNotFoundError(f"{location} does not exist")


def local_dir(location: str, marker: str) -> Path:
    """A local path to read a finished, never-changing directory (marked by `marker`) from."""
    return remote.fetch_dir(location, marker) if is_uri(location) else Path(location)


def remove_dir(location: str) -> None:
    if is_uri(location):
        remote.remove(location)
    else:
        shutil.rmtree(location, ignore_errors=True)


def open_prepared(location: str):
    """A prepared data set (data_prep.prepared.PreparedData) read from `location`, a directory or
    a URI; its `path` stays `location`, so plans built from it send every node to the store."""
    import dataclasses

    from partfer.data_prep.prepared import load_prepared
    from partfer.data_prep.schema import SUCCESS_MARKER
    data = load_prepared(local_dir(location, SUCCESS_MARKER))
    return dataclasses.replace(data, path=location) if is_uri(location) else data


def push_run(run_dir: str | Path, run_uri: str) -> str:
    """Upload a run directory from this node's copy to its URI, plan.json last; returns the URI."""
    remote.upload_dir(run_dir, run_uri, marker=remote.RUN_MARKER)
    return run_uri


def pull_outputs(plan, root: str, skip: tuple[str, ...] = (CHECKPOINT_FILE,)) -> int:
    """Copy what results/ reads of a run (every finished model directory the plan names, but its
    checkpoints, and the cross-data-set predictions) from a URI root into this node's cache of it,
    so the run directory there reads like a local one. Returns the number of files copied."""
    dirs = sorted({r.dir for r in plan.models} | {d for r in plan.models for d in r.stage_dirs.values()})
    try:
        for rel in [*dirs, *(p for r in plan.models for p in r.extra_predictions)]:
            safe_relative(rel, f"plan.json of run {plan.run_id}")
    except ValueError as err:
        raise remote.StorageError(str(err)) from None
    counts: list[int] = []
    remote.run_parallel(lambda d: counts.append(remote.sync_down(
        join(root, d), remote.cache_path(join(root, d)), skip=skip, marker=DONE_FILE)), dirs)
    copied = sum(counts)
    extra = sorted({p for r in plan.models for p in r.extra_predictions})
    for rel in extra:
        uri = join(root, rel)
        if not remote.cache_path(uri).is_file():
            copied += remote.fetch_file(uri, missing_ok=True) is not None
    return copied


def pull_run(run_uri: str) -> Path:
    """Bring a run directory at a URI, and the model outputs and prepared data it names, into this
    node's cache; returns the local run directory, which results/ reads like any other."""
    from partfer.data_prep.schema import SUCCESS_MARKER
    from partfer.orchestrator.records import RunPlan
    if not remote.exists(join(run_uri, remote.RUN_MARKER)):
        raise FileNotFoundError(f"{run_uri}: no {remote.RUN_MARKER} (not a run directory)")
    local = remote.cache_path(run_uri)
    remote.sync_down(run_uri, local, fresh=True)
    plan = RunPlan.from_json((local / remote.RUN_MARKER).read_text(encoding="utf-8"))
    root = remote.parent(remote.parent(run_uri))
    pull_outputs(plan, root)
    for info in plan.datasets.values():
        location = stored(root, info.prepared)
        if is_uri(location) and remote.exists(join(location, SUCCESS_MARKER)):
            local_dir(location, SUCCESS_MARKER)
    return local
