"""What a data set's files hold, for the prepared directory's name: path, size and content digest.

Content, not modification times: a data set copied with `cp -r` or rsync'd to shared storage keeps
its key, so nothing is prepared or trained again. Reading every byte once is the price; a cache in
the user's cache folder (not in the store, which holds only prepared data, models and runs)
remembers each file's digest under its (path, size, mtime, inode), so an unchanged data set is not
read again.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from partfer import atomicio

CACHE_FILE = "content-digests.json"
CACHE_VERSION = 1
_CHUNK = 1 << 20

Entry = tuple[str, int, str]      # (relative path, size, digest or what the entry is instead)


def input_fingerprint(root: str | os.PathLike, cache: dict | None = None) -> list[Entry]:
    """(relative path, size, sha256 of the content) of every file under root, sorted.

    What cannot be read as a regular file still counts, so the hash never stops on it and the
    readers make a reject of it: a broken or looping link by its target, a FIFO, socket or device
    by its kind (never opened: a FIFO would block), an unreadable file as such, a folder that cannot
    be listed as (its path + "/", -1, "unlisted"). `cache` (load_cache) is updated in place.
    """
    root = Path(root).resolve()         # once: every file's cache key is then an absolute path
    entries: list[Entry] = []

    def unlisted(err: OSError) -> None:
        if err.filename is not None:
            entries.append((Path(err.filename).relative_to(root).as_posix() + "/", -1, "unlisted"))

    for folder, dirs, files in os.walk(root, onerror=unlisted):
        dirs.sort()
        for file in sorted(files):
            path = Path(folder) / file
            entries.append((path.relative_to(root).as_posix(), *_describe(path, cache)))
    entries.sort()
    return entries


def _describe(path: Path, cache: dict | None) -> tuple[int, str]:
    try:
        st = path.stat()
    except OSError:
        try:
            return -1, f"link to {os.readlink(path)}"
        except OSError as exc:
            return -1, f"unreadable ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return st.st_size, "not a regular file"
    key = os.fsencode(path).hex()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    known = cache.get(key) if cache is not None else None
    if known is not None and known[:3] == stamp:
        return st.st_size, known[3]
    try:
        digest = _sha256(path)
    except OSError as exc:
        return st.st_size, f"unreadable ({exc.strerror})"
    if cache is not None:
        cache[key] = [*stamp, digest]
    return st.st_size, digest


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def cache_path() -> Path:
    """$XDG_CACHE_HOME/partfer (or ~/.cache/partfer)/content-digests.json."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "partfer" / CACHE_FILE


def load_cache(path: str | os.PathLike | None = None) -> dict:
    """The digests remembered in `path` (default cache_path()); empty when there are none or they
    are unreadable (the cache only saves time: a bad one is rebuilt, never trusted)."""
    try:
        data = json.loads(Path(path or cache_path()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    files = data.get("files")
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items()
            if isinstance(v, list) and len(v) == 4 and all(isinstance(x, int) for x in v[:3])
            and isinstance(v[3], str)}


def save_cache(cache: dict, path: str | os.PathLike | None = None) -> None:
    """Write the cache atomically, without files that are gone; a store that cannot be written to
    keeps working without it (the digests are read again next time)."""
    kept = {key: value for key, value in cache.items() if os.path.lexists(bytes.fromhex(key))}
    path = Path(path or cache_path())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomicio.write_text(path,
                            json.dumps({"version": CACHE_VERSION, "files": kept}, sort_keys=True))
    except OSError:
        pass
