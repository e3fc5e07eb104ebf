"""Atomic writes of files and folders, for every package of partfer (data_prep, orchestrator,
results, bench): a reader, a crashed writer or a second writer never leaves a half-written file or
folder under the final name.

Rules every writer here follows:
  - a temporary name beside the target (one file system, so the final step is a rename), unique per
    write: `.<name>.tmp-<host>-<pid>-<random>`; host and pid say who owns it, so a later writer can
    tell a leftover of a killed process from one still being written (`clean_stale`);
  - file contents are fsynced before the rename, and the folder after it, so a power cut leaves the
    old file or the new one;
  - publishing a folder is tolerant: when another process put a complete folder there first
    ("someone else finished"), that is success and our temporary folder is removed.
Imports the standard library only.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Callable

TEMP_TAG = ".tmp-"
STALE_SECONDS = 24 * 3600          # a temporary name on another host is left alone until this old


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh, unique temporary name beside `path` (the target's own folder)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_TAG}{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:12]}")


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is a temporary name (of this module, or an older writer's)."""
    return TEMP_TAG in name or name.endswith(".tmp")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:                      # some file systems refuse to open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        elif path.is_dir():
            _fsync_dir(path)
    _fsync_dir(folder)


def write_with(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Create `path` whole or not at all: `write(tmp)` writes the content to a temporary file,
    which is fsynced and renamed over `path`. Folders are created as needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise named(err, path) from err
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def named(err: OSError, path: str | os.PathLike) -> OSError:
    """`err` naming `path` when it names no file or only a temporary one (or one inside a
    temporary folder): a full disk raises from a file object's write without a name, and the user
    knows the target, not our temporary names."""
    if err.filename is not None and not any(is_temporary(part) for part in Path(str(err.filename)).parts):
        return err
    reason = err.strerror or " ".join(str(err).split()) or type(err).__name__
    return OSError(err.errno, reason, str(path))           # the errno's own subclass (PermissionError ...)


def publish_new(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Give the complete file `tmp` the name `path`, which must be free: FileExistsError (and
    `tmp` kept) when anything is there, even a file that appeared a moment ago. A hard link is the
    one rename that never replaces; where a file system has none, an existence check then a
    rename stands in."""
    tmp, path = Path(tmp), Path(path)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.rename(tmp, path)
    else:
        tmp.unlink()
    _fsync_dir(path.parent)
    return path


def write_new(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` whole, never over an existing file (FileExistsError, nothing written)."""
    path = Path(path)
    clean_stale(path)
    tmp = temp_path(path)
    try:
        tmp.write_bytes(data)
        publish_new(tmp, path)
    except FileExistsError:
        raise
    except OSError as err:
        raise named(err, path) from err
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return write_with(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomic UTF-8 text write (newlines kept as given, so rebuilds are byte-identical)."""
    return write_bytes(path, text.encode("utf-8"))


def make_temp_dir(final: str | os.PathLike) -> Path:
    """A fresh folder beside `final` in which to build what `publish_dir` will put there."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(final)
    build = temp_path(final)
    build.mkdir()
    return build


def publish_dir(build: str | os.PathLike, final: str | os.PathLike,
                is_complete: Callable[[Path], bool]) -> bool:
    """Move the finished folder `build` to `final`. When `final` already exists: a complete one
    (by `is_complete`) is kept and `build` removed (someone else finished: still success); an
    incomplete one is replaced. Returns whether ours is the folder now at `final`."""
    build, final = Path(build), Path(final)
    _fsync_tree(build)
    for _ in range(16):              # each pass either publishes or sees someone else's progress
        try:
            os.rename(build, final)  # also succeeds over an empty folder
            _fsync_dir(final.parent)
            return True
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                shutil.rmtree(build, ignore_errors=True)
                raise
        if is_complete(final):
            shutil.rmtree(build, ignore_errors=True)
            return False
        _move_aside_and_remove(final)
    shutil.rmtree(build, ignore_errors=True)
    raise OSError(f"{final}: could not publish (it kept changing under another writer)")


def replace_dir(build: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Put the finished folder `build` at `final`, replacing whatever folder is there (the caller
    has checked that it may); readers see the old folder or the new one, never a mix."""
    build, final = Path(build), Path(final)
    _fsync_tree(build)
    if final.exists():
        old = temp_path(final)
        os.rename(final, old)
        try:
            os.rename(build, final)
        except BaseException:
            os.rename(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(build, final)
    _fsync_dir(final.parent)
    return final


def _move_aside_and_remove(folder: Path) -> None:
    aside = temp_path(folder)
    try:
        os.rename(folder, aside)
    except FileNotFoundError:
        return                        # another writer moved it first
    shutil.rmtree(aside, ignore_errors=True)


def _owner_gone(name: str) -> bool | None:
    """True/False when the temporary name was made by a process of this host (dead/alive); None
    when its owner cannot be told (another host, or an older naming)."""
    tail = name.rsplit(TEMP_TAG, 1)[-1].split("-")
    if len(tail) != 3 or tail[0] != _host_tag() or not tail[1].isdigit():
        return None
    pid = int(tail[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:           # alive, someone else's
        return False
    return False


def _newest_mtime(path: Path) -> float:
    try:
        newest = path.lstat().st_mtime
        if path.is_dir() and not path.is_symlink():
            for child in path.rglob("*"):
                try:
                    newest = max(newest, child.lstat().st_mtime)
                except FileNotFoundError:
                    pass
        return newest
    except FileNotFoundError:
        return time.time()


def clean_stale(target: str | os.PathLike, max_age: float = STALE_SECONDS) -> int:
    """Remove temporary siblings of `target` left by a killed writer: those whose owner (a process
    of this host) is gone, and any untouched for `max_age` seconds. A temporary name of a live
    process, or a recent one of another host, is left alone. Returns how many were removed."""
    target = Path(target)
    prefix = f".{target.name}{TEMP_TAG}"
    try:
        entries = [e for e in os.scandir(target.parent) if e.name.startswith(prefix)]
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return 0
    removed = 0
    now = time.time()
    for entry in entries:
        path = Path(entry.path)
        gone = _owner_gone(entry.name)
        if gone is False:
            continue
        if not gone and now - _newest_mtime(path) < max_age:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure as PNG atomically; no metadata that changes between builds."""
    return write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None}))
