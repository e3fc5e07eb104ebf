"""A run's store as one object, built once from the config's `storage` (`open_store`) and then
asked for every check, copy and publication, so no caller needs to know what kind of store it is.

LocalStore: a folder (a disk, or NFS that every node mounts). The run's files are written in
  place (atomicio), so there is nothing to publish and nothing to fetch.
UriStore: an object store or any other filesystem pyarrow opens from a URI (`s3://`, `gs://`,
  `file:///...`). The driver makes the run's files in this node's cache of the store (`work`) and
  publishes them (orchestrator.storage.remote); what other nodes made is fetched from the URI.

A run directory given by location (`partfer report`, `partfer export`) opens as a `RunCopy`: the
folder itself, or this node's copy of a run at a URI, which can be published back.
Workers get locations inside their jobs, not a Store: the per-location functions of
orchestrator.storage.store serve them.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from partfer import atomicio
from partfer.orchestrator.run_files import PLAN_FILE, RUNS_DIR
from partfer.orchestrator.storage import remote, store
from partfer.orchestrator.storage.remote import StorageError, basename, is_uri, join, relative



@dataclass(frozen=True)
class Probe:
    """Whether the store can be written, for `partfer doctor`: `problem` names what is wrong
    (unreachable | not_a_folder | read_only), '' when nothing is."""
    ok: bool
    detail: str
    problem: str = ""


@dataclass(frozen=True)
class Store(ABC):
    """The storage root of a run: an absolute local path or a URI."""
    root: str

    def join(self, *parts: str) -> str:
        return join(self.root, *parts)

    @property
    @abstractmethod
    def work(self) -> Path:
        """Where this process makes the store's files before they are published."""

    @property
    @abstractmethod
    def reaches_every_node(self) -> bool:
        """Whether every node of a cluster sees the same store without being told so."""

    @property
    @abstractmethod
    def work_is_this_nodes(self) -> bool:
        """Whether `work` is this node's alone (what is made there, no other node sees)."""

    @abstractmethod
    def check(self, write: bool = True) -> None:
        """StorageError, in one line, when the store cannot be used; before any work starts."""

    @abstractmethod
    def probe(self) -> Probe:
        """Whether the store can be written, without raising (`partfer doctor`)."""

    @abstractmethod
    def recorded(self, prepared: str) -> str:
        """How plan.json names a prepared data set at `prepared`."""

    @abstractmethod
    def share_prepared(self, path: str) -> str:
        """Where a run's plan reads the prepared data set at `path` (a directory or a URI) from,
        so that every node can read it."""

    @abstractmethod
    def prepared_fetcher(self) -> Callable[[Path], bool] | None:
        """How a data set not yet prepared in `work` is fetched from the store instead of being
        prepared again (data_prep.pipeline.prepare_datasets' `fetch`); None: nothing to fetch."""

    @abstractmethod
    def publish(self, folder: str | os.PathLike, *parts: str, marker: str | None = None) -> str | None:
        """Make a folder made in `work` visible at `<root>/<parts>` (`marker` last); returns where
        it was published, None when `work` is the store itself."""

    def publish_run(self, run_dir: str | os.PathLike) -> str | None:
        """Publish a run directory made in `work` (plan.json last); its location, or None."""
        return self.publish(run_dir, RUNS_DIR, Path(run_dir).name, marker=PLAN_FILE)

    @abstractmethod
    def pull_outputs(self, plan) -> int:
        """Bring what results/ reads of a run (orchestrator.storage.store.pull_outputs) into
        `work`; returns the number of files copied."""


@dataclass(frozen=True)
class LocalStore(Store):
    """A folder: `work` is the store itself."""

    @property
    def work(self) -> Path:
        return Path(self.root).resolve()

    @property
    def reaches_every_node(self) -> bool:
        return False                  # only when declared mounted everywhere (storage_shared)

    @property
    def work_is_this_nodes(self) -> bool:
        return False

    def check(self, write: bool = True) -> None:
        return None                   # its folders are made by the first write

    def probe(self) -> Probe:
        """A probe file in the folder, or in the nearest existing folder above one that a run
        would create."""
        folder = Path(self.root)
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            return Probe(False, f"{existing} is not a folder", "not_a_folder")
        probe = atomicio.temp_path(existing / "partfer-doctor")
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            return Probe(False, f"cannot write in {existing} ({err.strerror or err})", "read_only")
        return Probe(True, "writable" if existing == folder else f"will be created in {existing} (writable)")

    def recorded(self, prepared: str) -> str:
        return str(prepared)

    def share_prepared(self, path: str) -> str:
        return path

    def prepared_fetcher(self) -> Callable[[Path], bool] | None:
        return None

    def publish(self, folder: str | os.PathLike, *parts: str, marker: str | None = None) -> str | None:
        return None

    def pull_outputs(self, plan) -> int:
        return 0


@dataclass(frozen=True)
class UriStore(Store):
    """A URI: `work` is this node's cache of it; files travel through pyarrow's filesystems."""

    @property
    def work(self) -> Path:
        return remote.cache_path(self.root)

    @property
    def reaches_every_node(self) -> bool:
        # an object store (s3://, gs://, abfs://, hdfs://...) is the same from every node; file://
        # names this machine's disk (shared only as NFS is, with storage_shared)
        return not self.root.startswith("file:")

    @property
    def work_is_this_nodes(self) -> bool:
        return True

    def check(self, write: bool = True) -> None:
        remote.check(self.root, write=write)

    def probe(self) -> Probe:
        try:
            remote.check(self.root, write=True)
        except StorageError as err:
            return Probe(False, str(err), "unreachable")
        return Probe(True, "reachable and writable")

    def recorded(self, prepared: str) -> str:
        """Inside the store: relative to its root (as models are: results/ reads it from a
        local copy of the store); anything else as it is."""
        if is_uri(prepared):
            try:
                return relative(prepared, self.root)
            except ValueError:
                pass
        return str(prepared)

    def share_prepared(self, path: str) -> str:
        """Its copy under `<root>/prepared/`, uploaded with _SUCCESS last when not there yet."""
        from partfer.data_prep.prepared import PREPARED_DIR
        from partfer.data_prep.schema import SUCCESS_MARKER
        target = self.join(PREPARED_DIR, basename(path))
        if path != target and not store.exists(join(target, SUCCESS_MARKER)):
            remote.upload_dir(store.local_dir(path, SUCCESS_MARKER), target, marker=SUCCESS_MARKER)
        return target

    def prepared_fetcher(self) -> Callable[[Path], bool] | None:
        from partfer.data_prep.prepared import PREPARED_DIR
        from partfer.data_prep.schema import SUCCESS_MARKER

        def fetch(final: Path) -> bool:
            try:
                remote.download_dir(self.join(PREPARED_DIR, final.name), final, SUCCESS_MARKER)
            except FileNotFoundError:              # not prepared there (yet)
                return False
            return True
        return fetch

    def publish(self, folder: str | os.PathLike, *parts: str, marker: str | None = None) -> str | None:
        target = self.join(*parts)
        remote.upload_dir(folder, target, marker=marker)
        return target

    def pull_outputs(self, plan) -> int:
        return store.pull_outputs(plan, self.root)


def open_store(location: str | os.PathLike) -> Store:
    """The store at `location`: a URI as it is, a local path made absolute (links resolved).
    Nothing is checked or created (Store.check)."""
    text = str(location)
    return UriStore(text) if is_uri(text) else LocalStore(str(Path(text).resolve()))


def run_store(recorded: str, run_dir: str | os.PathLike) -> Store:
    """The store holding a run directory: the URI its plan.json records, else the folder holding
    `runs/` (a local store that was moved or copied still works)."""
    return UriStore(recorded) if is_uri(recorded) else LocalStore(str(Path(run_dir).parent.parent))


@dataclass(frozen=True)
class RunCopy:
    """A run directory to read on this node: `local`, and for a run at a URI the URI (`remote`)
    and its store's root, from which the files a reader needs beyond the run's own are fetched."""
    local: Path
    remote: str | None = None
    store_root: str | None = None

    def fetch(self, folder: str, names: tuple[str, ...]) -> None:
        """This node's copies of files of a folder of the run's store (relative to its root),
        as far as they exist; a local run reads them in place."""
        if self.store_root is None:
            return
        for name in names:
            store.local_file(join(self.store_root, folder, name), missing_ok=True)

    def publish(self) -> str | None:
        """Upload the local copy back to the run's URI (plan.json last); its URI, or None."""
        return store.push_run(self.local, self.remote) if self.remote else None


def open_run(location: str | os.PathLike) -> RunCopy:
    """The run directory at `location`: a folder, read in place, or a URI, checked and copied
    (with the model outputs and prepared data it names) into this node's cache. A URI that
    holds no run: FileNotFoundError."""
    text = str(location)
    if not is_uri(text):
        return RunCopy(Path(location))
    remote.check(text, write=False)
    return RunCopy(store.pull_run(text), text, remote.parent(remote.parent(text)))
