"""One Store per run: a folder and a URI store (`file://`, the code path of `s3://`) answer the
same questions, so callers never ask which kind they hold."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from partfer.orchestrator.records import RunPlan
from partfer.orchestrator.run_files import PLAN_FILE
from partfer.orchestrator.storage import remote
from partfer.orchestrator.storage.root import LocalStore, UriStore, open_run, open_store, run_store


@pytest.fixture
def uri(tmp_path, monkeypatch) -> str:
    """A store URI and a private cache (this test's "node")."""
    monkeypatch.setenv(remote.CACHE_ENV, str(tmp_path / "cache"))
    return (tmp_path / "bucket" / "prefix").as_uri()


def _at_uri(location: str) -> Path:
    return Path(remote.resolve(location)[1])


def _run_dir(folder: Path, text: str = "{}") -> Path:
    folder.mkdir(parents=True)
    (folder / PLAN_FILE).write_text(text)
    (folder / "report.md").write_text("report")
    return folder


def test_a_folder_is_the_store_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = open_store("store")
    assert isinstance(store, LocalStore) and store.root == str(tmp_path / "store")
    assert store.work == tmp_path / "store"
    assert not store.reaches_every_node and not store.work_is_this_nodes
    store.check()
    assert not (tmp_path / "store").exists()               # checking creates nothing
    assert store.join("runs", "r1") == str(tmp_path / "store" / "runs" / "r1")
    assert store.recorded("/data/prepared/jaffe-1") == "/data/prepared/jaffe-1"
    assert store.share_prepared("/data/prepared/jaffe-1") == "/data/prepared/jaffe-1"
    assert store.prepared_fetcher() is None
    run_dir = _run_dir(store.work / "runs" / "r1")
    assert store.publish_run(run_dir) is None and store.pull_outputs(None) == 0


def test_a_uri_store_works_in_this_nodes_cache_and_publishes(uri, tmp_path):
    store = open_store(uri)
    assert isinstance(store, UriStore) and store.root == uri
    assert store.work == remote.cache_path(uri) and store.work.is_relative_to(tmp_path / "cache")
    assert store.work_is_this_nodes and not store.reaches_every_node        # file://: this disk
    assert open_store("s3://bucket/p").reaches_every_node
    store.check()
    assert store.recorded(store.join("prepared", "jaffe-1")) == "prepared/jaffe-1"
    assert store.recorded("/data/prepared/jaffe-1") == "/data/prepared/jaffe-1"
    assert store.recorded("s3://other/prepared/jaffe-1") == "s3://other/prepared/jaffe-1"
    run_dir = _run_dir(store.work / "runs" / "r1")
    published = store.publish_run(run_dir)
    assert published == store.join("runs", "r1")
    assert (_at_uri(published) / PLAN_FILE).read_text() == "{}"
    assert (_at_uri(published) / "report.md").read_text() == "report"


def test_prepared_data_is_shared_through_a_uri_store_and_fetched_back(uri, tmp_path):
    source = tmp_path / "prepared" / "jaffe-0123456789ab"
    (source / "data").mkdir(parents=True)
    (source / "data" / "part-0.parquet").write_bytes(b"rows")
    (source / "_SUCCESS").write_bytes(b"")
    store = open_store(uri)
    shared = store.share_prepared(str(source))
    assert shared == store.join("prepared", source.name)
    assert (_at_uri(shared) / "data" / "part-0.parquet").read_bytes() == b"rows"
    fetch = store.prepared_fetcher()
    final = tmp_path / "node-b" / "prepared" / source.name
    assert fetch(final) and (final / "data" / "part-0.parquet").read_bytes() == b"rows"
    assert not fetch(tmp_path / "node-b" / "prepared" / "ckplus-000000000000")


def test_a_store_that_cannot_be_used_is_named_in_one_line(tmp_path):
    with pytest.raises(remote.StorageError, match=r"^storage foo://bucket/x: cannot open its filesystem"):
        open_store("foo://bucket/x").check()
    probe = open_store("foo://bucket/x").probe()
    assert not probe.ok and probe.problem == "unreachable" and "foo://bucket/x" in probe.detail
    assert open_store((tmp_path / "new").as_uri()).probe().ok
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert open_store(a_file / "store").probe().problem == "not_a_folder"
    assert open_store(tmp_path).probe().detail == "writable"
    assert open_store(tmp_path / "later" / "store").probe().detail == f"will be created in {tmp_path} (writable)"
    if os.geteuid() != 0:                                   # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert open_store(locked).probe().problem == "read_only"


def test_the_store_of_a_run_is_the_recorded_uri_or_the_folder_above_runs(tmp_path):
    run_dir = tmp_path / "moved" / "runs" / "r1"
    assert run_store("/where/it/was", run_dir) == LocalStore(str(tmp_path / "moved"))
    assert run_store("s3://bucket/p", run_dir) == UriStore("s3://bucket/p")


def test_a_run_at_a_uri_is_read_from_a_copy_and_published_back(uri, tmp_path, monkeypatch):
    local = _run_dir(tmp_path / "store" / "runs" / "r1")
    run = open_run(str(local))
    assert run.local == local and run.remote is None and run.publish() is None
    run.fetch("models/x", ("checkpoint.pt",))              # a local run reads in place

    with pytest.raises(FileNotFoundError, match="not a run directory"):
        open_run(open_store(uri).join("runs", "none"))
    store = open_store(uri)
    plan = RunPlan(run_id="r2", storage=uri, settings={}, datasets={}, models=[])
    run_uri = store.publish_run(_run_dir(store.work / "runs" / "r2", plan.to_json()))
    model = _at_uri(store.join("models", "m"))
    model.mkdir(parents=True)
    (model / "checkpoint.pt").write_bytes(b"weights")
    node_b = tmp_path / "node-b"
    monkeypatch.setenv(remote.CACHE_ENV, str(node_b))        # another node: an empty cache
    run = open_run(run_uri)
    assert run.remote == run_uri and run.store_root == uri
    assert run.local == remote.cache_path(run_uri) and run.local.is_relative_to(node_b)
    run.fetch("models/m", ("checkpoint.pt", "meta.json"))   # what exists is fetched
    assert (remote.cache_path(store.join("models", "m")) / "checkpoint.pt").read_bytes() == b"weights"
    (run.local / "report.md").write_text("rebuilt")
    assert run.publish() == run_uri
    assert (_at_uri(run_uri) / "report.md").read_text() == "rebuilt"
