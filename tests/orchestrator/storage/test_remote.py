"""Stores at a URI, through pyarrow's filesystems: `file://` URIs take the very code path that
`s3://` and `gs://` take (FileSystem.from_uri), with no network and no fake object store."""
from __future__ import annotations

from pathlib import Path

import pytest

from partfer.orchestrator.storage import remote, store


@pytest.fixture
def uri(tmp_path, monkeypatch) -> str:
    """A store URI and a private cache (this test's "node")."""
    monkeypatch.setenv(remote.CACHE_ENV, str(tmp_path / "cache"))
    return (tmp_path / "bucket" / "prefix").as_uri()


def _build(final: str, files: dict[str, bytes]) -> Path:
    build = store.build_dir_for(final)
    for rel, data in files.items():
        (build / rel).parent.mkdir(parents=True, exist_ok=True)
        (build / rel).write_bytes(data)
    return build


def _remote_path(uri: str) -> Path:
    fs, path = remote.resolve(uri)
    assert fs.type_name == "local"
    return Path(path)


def test_locations_join_and_split_like_paths():
    assert remote.is_uri("s3://b/p") and remote.is_uri("file:///tmp/x") and not remote.is_uri("/tmp/x")
    assert remote.join("s3://b/p", "models", "a/b") == "s3://b/p/models/a/b"
    assert remote.join("s3://b/p?region=eu-west-1", "runs/x/") == "s3://b/p/runs/x?region=eu-west-1"
    assert remote.join("file:///tmp//x/", "../y") == "file:///tmp/y"
    assert remote.join("/tmp/x", "a", "b") == "/tmp/x/a/b"
    assert remote.basename("gs://b/p/prepared/jaffe-0123?x=1") == "jaffe-0123"
    assert remote.parent(remote.parent("s3://b/p/runs/r1")) == "s3://b/p"
    assert remote.relative("s3://b/p/models/m", "s3://b/p") == "models/m"
    with pytest.raises(ValueError, match="s3://b/other/m is not under s3://b/p"):
        remote.relative("s3://b/other/m", "s3://b/p")
    with pytest.raises(ValueError, match="s3://c/p/m is not under s3://b/p"):
        remote.relative("s3://c/p/m", "s3://b/p")


def test_the_cache_mirrors_uris_and_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv(remote.CACHE_ENV, str(tmp_path / "c"))
    assert remote.cache_path("s3://bucket/a/b") == tmp_path / "c" / "s3" / "bucket" / "a" / "b"
    assert remote.cache_path("file:///data/store") == tmp_path / "c" / "file" / "_" / "data" / "store"
    # another endpoint (a query) is another cache; the same bucket elsewhere never mixes with it
    other = remote.cache_path("s3://bucket/a/b?endpoint_override=minio:9000")
    assert other != remote.cache_path("s3://bucket/a/b") and other.name == "b"
    monkeypatch.delenv(remote.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert remote.cache_root() == tmp_path / "xdg" / "partfer"


def test_publish_uploads_the_marker_last_and_keeps_a_local_copy(uri):
    final = store.model_dir(uri, "jaffe", "el", "mouth", 0, "landmark", "k" * 32)
    files = {"checkpoint.pt": b"w" * 5000, "predictions.parquet": b"p", "sub/x.csv": b"x",
             store.DONE_FILE: b"{}"}
    build = _build(final, files)
    assert not store.is_done(final)
    store.publish_dir(build, final)
    assert store.is_done(final) and not build.exists()
    where = _remote_path(final)
    assert {p.relative_to(where).as_posix(): p.read_bytes() for p in where.rglob("*") if p.is_file()} == files
    marker_time = (where / store.DONE_FILE).stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= marker_time for p in where.rglob("*") if p.is_file())
    # this node keeps what it built: the next stage here reads it without a download
    local = remote.cache_path(final)
    assert (local / "checkpoint.pt").read_bytes() == files["checkpoint.pt"]
    assert store.local_file(store.join(final, "checkpoint.pt")) == local / "checkpoint.pt"
    assert not list(where.parent.rglob("*.tmp-*")) and not list(local.parent.rglob("*.tmp-*"))


def test_an_upload_cut_before_its_marker_is_not_done_and_is_completed_later(uri, tmp_path, monkeypatch):
    final = store.model_dir(uri, "jaffe", "baseline", "m0", 1, "baseline", "c" * 32)
    # what a writer killed mid-upload leaves: some files, no meta.json
    cut = _build(final, {"checkpoint.pt": b"old", "history.csv": b"old"})
    remote.upload_dir(cut, final, marker=store.DONE_FILE)
    assert not store.is_done(final)
    assert remote.scan_done(uri, store.DONE_FILE) == 0
    with pytest.raises(FileNotFoundError, match="not a finished directory"):
        remote.fetch_dir(final, store.DONE_FILE)
    # another node retries the stage and publishes it whole
    monkeypatch.setenv(remote.CACHE_ENV, str(tmp_path / "other-node"))
    store.publish_dir(_build(final, {"checkpoint.pt": b"new", "history.csv": b"new",
                                     store.DONE_FILE: b"{}"}), final)
    assert store.is_done(final)
    assert (_remote_path(final) / "checkpoint.pt").read_bytes() == b"new"


def test_a_second_publisher_keeps_the_first_result(uri):
    final = store.model_dir(uri, "jaffe", "ftl", "m0", 0, "head", "d" * 32)
    store.publish_dir(_build(final, {"checkpoint.pt": b"first", store.DONE_FILE: b"{}"}), final)
    late = _build(final, {"checkpoint.pt": b"second", store.DONE_FILE: b"{}"})
    store.publish_dir(late, final)               # a retried task that finished after the first
    assert (_remote_path(final) / "checkpoint.pt").read_bytes() == b"first"
    assert not late.exists()


def test_one_listing_finds_every_finished_directory(uri):
    done = [store.model_dir(uri, "jaffe", "el", "nose", f, "landmark", "e" * 32) for f in range(3)]
    for final in done:
        store.publish_dir(_build(final, {store.DONE_FILE: b"{}"}), final)
    unfinished = store.model_dir(uri, "jaffe", "el", "nose", 3, "landmark", "e" * 32)
    remote.upload_dir(_build(unfinished, {"checkpoint.pt": b"x"}), unfinished)
    assert remote.scan_done(store.join(uri, "models"), store.DONE_FILE) == 3
    assert all(store.is_done(d) for d in done) and not store.is_done(unfinished)


def test_files_that_change_are_fetched_fresh_and_removed_everywhere(uri):
    state = store.join(uri, "packs", "abc", "state.pt")
    store.atomic_write_bytes(state, b"epoch 1")
    assert store.local_file(state, fresh=True).read_bytes() == b"epoch 1"
    store.atomic_write_bytes(state, b"epoch 2")                 # the pack went on on another node
    assert store.local_file(state).read_bytes() == b"epoch 1"   # a cached copy, for files that never change
    assert store.local_file(state, fresh=True).read_bytes() == b"epoch 2"
    assert not list(_remote_path(state).parent.glob(".*tmp-*"))
    store.remove_dir(store.join(uri, "packs", "abc"))
    assert not _remote_path(state).exists() and not remote.cache_path(state).exists()
    assert store.local_file(state, fresh=True, missing_ok=True) is None
    with pytest.raises(FileNotFoundError, match=r"packs/abc/state\.pt does not exist"):
        store.local_file(state)


def test_a_finished_directory_is_downloaded_once(uri, tmp_path):
    source = tmp_path / "prepared-local"
    (source / "data").mkdir(parents=True)
    (source / "data" / "part-00000.parquet").write_bytes(b"rows")
    (source / "_SUCCESS").write_bytes(b"")
    target = store.join(uri, "prepared", "jaffe-0123456789ab")
    remote.upload_dir(source, target, marker="_SUCCESS")
    local = store.local_dir(target, "_SUCCESS")
    assert local == remote.cache_path(target)
    assert (local / "data" / "part-00000.parquet").read_bytes() == b"rows"
    store.remove_dir(str(_remote_path(target)))                # gone at the URI: the copy serves
    assert store.local_dir(target, "_SUCCESS") == local


def test_unusable_stores_fail_early_in_one_line(tmp_path):
    with pytest.raises(remote.StorageError, match=r"^storage foo://bucket/x: cannot open its filesystem"):
        remote.check("foo://bucket/x")
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(remote.StorageError, match="is a file, not a folder"):
        remote.check(a_file.as_uri())
    # an endpoint that does not answer (here: no network) or refuses (no credentials) is named
    with pytest.raises(remote.StorageError) as err:
        remote.check("s3://partfer-no-such-bucket/x?region=us-east-1", timeout=2)
    assert "s3://partfer-no-such-bucket/x" in str(err.value) and "\n" not in str(err.value)
    remote.check((tmp_path / "new-store").as_uri())            # a fresh folder is fine: created
    assert not list((tmp_path / "new-store").iterdir())         # and the probe is gone
