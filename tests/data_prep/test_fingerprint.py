"""The input fingerprint: a data set's files by content, so a copy keeps its prepared key."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading

from partfer.data_prep.fingerprint import cache_path, input_fingerprint, load_cache, save_cache


def _tree(root):
    (root / "s1").mkdir(parents=True)
    (root / "s1" / "a.png").write_bytes(b"\x89PNG one")
    (root / "s1" / "b.png").write_bytes(b"\x89PNG two, longer")
    (root / "notes.txt").write_text("hello")
    return root


def test_a_copy_without_its_times_has_the_same_fingerprint(tmp_path):
    original = _tree(tmp_path / "original")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(original), str(copy)], check=True)    # times not preserved
    os.utime(copy / "s1" / "a.png", ns=(1, 1))
    assert input_fingerprint(copy) == input_fingerprint(original)
    assert input_fingerprint(original)[0] == (
        "notes.txt", 5, hashlib.sha256(b"hello").hexdigest())


def test_the_cache_skips_unchanged_files_and_rereads_changed_ones(tmp_path):
    root = _tree(tmp_path / "data")
    cache: dict = {}
    first = input_fingerprint(root, cache)
    assert len(cache) == 3
    save_cache(cache, tmp_path / "digests.json")
    loaded = load_cache(tmp_path / "digests.json")
    assert loaded == cache
    # A digest is taken from the cache only while size, mtime and inode are the ones it was read with.
    key = next(k for k in loaded if bytes.fromhex(k).endswith(b"a.png"))
    loaded[key][3] = "remembered"
    assert dict((p, d) for p, _, d in input_fingerprint(root, loaded))["s1/a.png"] == "remembered"
    (root / "s1" / "a.png").write_bytes(b"\x89PNG ONE")                    # same size, new content
    os.utime(root / "s1" / "a.png", ns=(10**18, 10**18))
    again = input_fingerprint(root, loaded)
    assert again != first and dict((p, d) for p, _, d in again)["s1/a.png"] == \
        hashlib.sha256(b"\x89PNG ONE").hexdigest()


def test_a_damaged_cache_is_ignored(tmp_path):
    path = tmp_path / "digests.json"
    for text in ("{not json", '{"version": 99, "files": {}}', '{"version": 1, "files": {"k": [1, 2]}}'):
        path.write_text(text)
        assert load_cache(path) == {}


def test_the_cache_lives_in_the_users_cache_folder_not_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = _tree(tmp_path / "data")
    cache: dict = {}
    input_fingerprint(root, cache)
    save_cache(cache)
    assert cache_path() == tmp_path / "cache" / "partfer" / "content-digests.json"
    assert load_cache() == cache


def test_special_files_are_named_never_opened(tmp_path):
    root = _tree(tmp_path / "data")
    os.mkfifo(root / "s1" / "pipe.png")               # opening it would block for ever
    (root / "s1" / "gone.png").symlink_to(root / "nowhere.png")
    result: list = []
    worker = threading.Thread(target=lambda: result.append(input_fingerprint(root)), daemon=True)
    worker.start()
    worker.join(30)
    assert result, "the fingerprint blocked on a FIFO"
    entries = {p: (size, d) for p, size, d in result[0]}
    assert entries["s1/pipe.png"][1] == "not a regular file"
    assert entries["s1/gone.png"] == (-1, f"link to {root / 'nowhere.png'}")
    shutil.rmtree(root)
