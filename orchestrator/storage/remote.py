"""A storage root given as a URI (`s3://bucket/prefix`, `gs://...`, `file:///...`): local staging
plus copies through pyarrow's filesystems (`pyarrow.fs.FileSystem.from_uri`).

Nothing here reads or writes objects in place. Writers build a directory on local disk, then
`publish_dir` uploads it with its marker file (a model's meta.json) LAST, so "the marker exists at
the URI" still means "complete" on every node; single files (a pack's resumable state) go up in one
put, which object stores make visible whole or not at all (`file://` stores: a temporary name,
then a rename). Readers copy what they need into this node's cache, which mirrors the URIs:
`<cache>/<scheme>/<host>/<path>` (cache: $PARTFER_CACHE, else $XDG_CACHE_HOME/partfer, else
~/.cache/partfer). Every copy there appears by rename, so a file in the cache is always complete;
content-addressed directories (prepared data, finished models) never change once complete, so a
cached copy of one is reused; files that change (a pack's state, a run directory) are fetched fresh.

Credentials are pyarrow's: the standard environment variables / config files of each cloud, on
every node (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or ~/.aws/credentials for s3://,
GOOGLE_APPLICATION_CREDENTIALS or gcloud's default credentials for gs://). A URI that carries them
(`s3://KEY:SECRET@bucket`, `?secret_key=...`, a SAS `sig`, ...) is refused before it is used
anywhere, since a URI is printed, names a cache folder and is written into config.yaml, plan.json
and model.json. Both are found by taking the URI apart (urllib.parse), and every message shows
URIs with their credentials replaced by `***` (`redact`).
Imports pyarrow only (no torch, no Ray).
"""
from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, unquote_plus, urlsplit, urlunsplit

from partfer import atomicio
from partfer.orchestrator.run_files import PLAN_FILE

CACHE_ENV = "PARTFER_CACHE"
TIMEOUT_ENV = "PARTFER_STORAGE_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
RUN_MARKER = PLAN_FILE                # a run directory's last upload
THREADS = 8                           # concurrent transfers of one directory
_CHUNK = 8 << 20
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Where a URI starts inside a longer text (a message); what it is made of is left to urllib.parse.
_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# Query keys whose values are credentials, compared case-insensitively after percent-decoding:
# pyarrow's S3/GCS/Azure options (FileSystem.from_uri reads them from the query), S3 and GCS
# pre-signed URLs, Azure SAS tokens (`sig`) and the generic names other tools use.
SECRET_QUERY_KEYS = frozenset(k.lower() for k in (
    "access_key", "secret_key", "secret_access_key", "session_token", "security_token", "access_token",
    "credentials", "credential", "token", "sas_token", "sig", "signature", "client_secret", "password",
    "passwd", "account_key", "api_key", "apikey", "private_key", "secret",
    "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token",
    "X-Goog-Signature", "X-Goog-Credential"))
# Azure's URIs name a container in the user info (`abfs://container@account.dfs.core.windows.net`):
# there only a password (the account key) is a credential. Elsewhere any user info is one
# (`s3://KEY:SECRET@bucket`, `gs://TOKEN@bucket`).
AZURE_SCHEMES = frozenset(("abfs", "abfss", "az", "adl", "wasb", "wasbs"))
REDACTED = "***"
_FLAT_STORES = ("s3", "gcs")          # object stores: no directories to create before a put
_done: set[str] = set()               # directories seen complete (completion is permanent)
_done_lock = threading.Lock()


class StorageError(ValueError):
    """A storage URI that cannot be used: unknown scheme, no credentials, no network, no answer."""


# ---- names ----------------------------------------------------------------------------------------

def is_uri(location: str | os.PathLike) -> bool:
    return bool(_URI.match(str(location)))


def _clean(path: str) -> str:
    """'/'-rooted, normalised ('a//b/../c/' -> '/a/c'; posixpath keeps a leading '//')."""
    path = posixpath.normpath("/" + path.strip("/"))
    return "/" + path.lstrip("/")


def _cut_authority(p: SplitResult) -> bool:
    """Whether urlsplit's authority holds a ':' that cannot be a port: one followed by no number,
    or any ':' in an object store's authority, which is a bucket name (their endpoints go in the
    query) and never has one (a secret `123/...` would read as port 123)."""
    if ":" not in p.netloc:
        return False
    if p.scheme.lower() in ("s3", "gs", "gcs"):
        return True
    try:
        p.port
    except ValueError:
        return True
    return False


@dataclass(frozen=True)
class _Pieces:
    """A URI taken apart by urllib.parse, with its user info found even when a secret in it holds
    a '/' (AWS secret keys may), which ends urlsplit's authority early."""
    scheme: str
    userinfo: str | None          # as written (percent-encoding kept); None: there is none
    host: str                     # host[:port]
    path: str
    query: str
    fragment: str

    @classmethod
    def of(cls, uri: str) -> "_Pieces":
        p = urlsplit(str(uri))
        if "@" in p.netloc:
            info, host = p.netloc.rsplit("@", 1)
            return cls(p.scheme, info, host, p.path, p.query, p.fragment)
        if _cut_authority(p):
            # `s3://KEY:SEC/RET@bucket/p` splits as host `KEY`, port `SEC`: a password cut by a
            # '/'. The user info then runs to the first '@' after the authority.
            rest = str(uri).split("://", 1)[1][len(p.netloc):]
            if "@" in rest:
                tail, after = rest.split("@", 1)
                q = urlsplit(f"{p.scheme}://{after}")
                return cls(p.scheme, p.netloc + tail, q.netloc, q.path, q.query, q.fragment)
        return cls(p.scheme, None, p.netloc, p.path, p.query, p.fragment)

    @property
    def secret_userinfo(self) -> bool:
        """Whether the user info is a credential (Azure: only a password; elsewhere: any)."""
        if self.userinfo is None:
            return False
        return self.scheme.lower() not in AZURE_SCHEMES or ":" in self.userinfo

    def secret_keys(self) -> list[str]:
        """The query's credential keys, as decoded."""
        return [k for k, _ in parse_qsl(self.query, keep_blank_values=True) if k.lower() in SECRET_QUERY_KEYS]

    def shown(self, keep_userinfo: bool = True) -> str:
        """The URI with every credential replaced by ***: a secret user info whole (an Azure
        container name stays), the values of credential query keys; keep_userinfo=False drops a
        secret user info altogether (the bare URI)."""
        info = self.userinfo
        if info is not None and self.secret_userinfo:
            if self.scheme.lower() in AZURE_SCHEMES:
                info = f"{info.split(':', 1)[0]}:{REDACTED}"
            else:
                info = REDACTED if keep_userinfo else None
        netloc = self.host if info is None else f"{info}@{self.host}"
        pairs = []
        for pair in self.query.split("&") if self.query else []:
            key, sep, _ = pair.partition("=")
            secret = unquote_plus(key).lower() in SECRET_QUERY_KEYS
            pairs.append(f"{key}={REDACTED}" if secret else pair)
        return urlunsplit((self.scheme, netloc, self.path, "&".join(pairs), self.fragment))


def redact(text: str) -> str:
    """`text` with the credentials of every URI in it replaced by `***` (for messages): the user
    info (but an Azure container name) and the values of credential query keys."""
    def shown(match: re.Match) -> str:
        uri = match.group(0)
        core = uri.rstrip(").,;:]")             # the sentence's punctuation, not the URI's
        return _Pieces.of(core).shown() + uri[len(core):]
    return _URI_IN_TEXT.sub(shown, str(text))


def refuse_credentials(uri: str) -> None:
    """StorageError when the URI carries credentials (a secret user info, or a credential query
    key), naming the URI without them."""
    pieces = _Pieces.of(str(uri))
    if pieces.secret_userinfo or pieces.secret_keys():
        raise StorageError(
            f"storage {pieces.shown(keep_userinfo=False)}: credentials in a URI are refused (they would be "
            f"printed and written into the run's files); give the bare URI and pass credentials the "
            f"standard way: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or ~/.aws/credentials for s3://, "
            f"GOOGLE_APPLICATION_CREDENTIALS for gs://, Azure's AZURE_* variables (DefaultAzureCredential) "
            f"for abfs://")


def _parts(uri: str) -> tuple[str, str, str, str]:
    """(scheme, host, '/'-rooted normalised path, query) of a URI (one with credentials: refused)."""
    refuse_credentials(uri)
    p = urlsplit(uri)
    return p.scheme, p.netloc, _clean(p.path), p.query


def join(location: str, *parts: str) -> str:
    """`location`/parts for a local path or a URI (the query of a URI stays at its end)."""
    parts = tuple(str(p) for p in parts)
    if not is_uri(location):
        return str(Path(location).joinpath(*parts))
    scheme, netloc, path, query = _parts(location)
    path = _clean("/".join([path, *parts]))
    return urlunsplit((scheme, netloc, path, query, ""))


def basename(location: str) -> str:
    """The last component of a path or URI (without a URI's query)."""
    if not is_uri(location):
        return Path(location).name
    return posixpath.basename(_parts(location)[2].rstrip("/"))


def parent(location: str) -> str:
    if not is_uri(location):
        return str(Path(location).parent)
    scheme, netloc, path, query = _parts(location)
    return urlunsplit((scheme, netloc, posixpath.dirname(path.rstrip("/")) or "/", query, ""))


def relative(location: str, root: str) -> str:
    """`location` relative to `root` ('/'-separated); ValueError when it is not under it."""
    if not is_uri(location):
        return str(Path(location).relative_to(root))
    (s1, n1, p1, q1), (s2, n2, p2, q2) = _parts(location), _parts(root)
    rel = posixpath.relpath(p1, p2)
    if (s1, n1, q1) != (s2, n2, q2) or rel == ".." or rel.startswith("../"):
        raise ValueError(f"{location} is not under {root}")
    return rel


def cache_root() -> Path:
    base = os.environ.get(CACHE_ENV)
    if base:
        return Path(base).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "partfer"


def cache_path(uri: str) -> Path:
    """Where this node keeps its copy of `uri`: <cache>/<scheme>/<host>/<path>."""
    scheme, netloc, path, query = _parts(uri)
    host = re.sub(r"[^A-Za-z0-9._@-]", "_", netloc) or "_"
    if query:                              # e.g. another endpoint: another cache
        host += "~" + hashlib.sha256(query.encode()).hexdigest()[:8]
    return cache_root() / scheme / host / path.strip("/")


# ---- filesystems ----------------------------------------------------------------------------------

def _one_line(err: BaseException) -> str:
    return re.sub(r"\s+", " ", str(err)).strip() or type(err).__name__


@functools.lru_cache(maxsize=None)
def _filesystem(scheme: str, netloc: str, query: str):
    from pyarrow.fs import FileSystem
    root = urlunsplit((scheme, netloc, "/", query, ""))
    try:
        fs, base = FileSystem.from_uri(root)
    except Exception as err:               # ArrowInvalid (unknown scheme), OSError (region, JVM ...)
        raise StorageError(_one_line(err)) from None
    return fs, base.rstrip("/")


def resolve(uri: str):
    """(pyarrow filesystem, path in it) of a URI; one filesystem per scheme+host+query and process."""
    scheme, netloc, path, query = _parts(uri)
    try:
        fs, base = _filesystem(scheme, netloc, query)
    except StorageError as err:
        raise StorageError(f"storage {uri}: cannot open its filesystem ({err})") from None
    return fs, (base + path if path != "/" else base or "/")


def exists(uri: str) -> bool:
    """Whether a file is at the URI."""
    from pyarrow.fs import FileType
    fs, path = resolve(uri)
    return fs.get_file_info(path).type == FileType.File


def _write_stream(fs, path: str, write) -> None:
    """Create `path` whole or not at all: object stores show an object once its upload completes;
    on file systems with directories (file://, hdfs) it is written aside and renamed."""
    if fs.type_name in _FLAT_STORES:
        with fs.open_output_stream(path) as out:
            write(out)
        return
    fs.create_dir(posixpath.dirname(path), recursive=True)
    tmp = posixpath.join(posixpath.dirname(path), atomicio.temp_path(posixpath.basename(path)).name)
    try:
        with fs.open_output_stream(tmp) as out:
            write(out)
        fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except OSError:
            pass
        raise


def put_bytes(uri: str, data: bytes) -> None:
    fs, path = resolve(uri)
    _write_stream(fs, path, lambda out: out.write(data))


def upload_file(local: str | os.PathLike, uri: str) -> None:
    fs, path = resolve(uri)

    def write(out):
        with open(local, "rb") as src:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
    _write_stream(fs, path, write)


def _download(fs, path: str, dest: Path) -> None:
    """Copy one object to `dest`, which appears whole (atomicio)."""
    def write(tmp: Path) -> None:
        with fs.open_input_stream(path) as src, open(tmp, "wb") as out:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
    atomicio.write_with(dest, write)


def _listing(uri: str) -> dict[str, int]:
    """Files under a URI directory, at any depth: path relative to it -> size ({} when it does not
    exist)."""
    from pyarrow.fs import FileSelector, FileType
    fs, path = resolve(uri)
    infos = fs.get_file_info(FileSelector(path, allow_not_found=True, recursive=True))
    base = path.rstrip("/") + "/"
    return {info.path[len(base):]: info.size for info in infos
            if info.type == FileType.File and info.path.startswith(base)}


def run_parallel(fn, items) -> None:
    items = list(items)
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(min(THREADS, len(items))) as pool:
        for _ in pool.map(fn, items):
            pass


def _is_temporary(relative_path: str) -> bool:
    """Files being written (atomicio's temporary names, older writers' too) never travel."""
    return any(atomicio.is_temporary(part) for part in relative_path.split("/"))


# ---- directories ----------------------------------------------------------------------------------

def upload_dir(local: str | os.PathLike, uri: str, marker: str | None = None) -> None:
    """Upload every file under `local` to `uri`, the marker file (relative path) last."""
    local = Path(local)
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    files = [f for f in files if not _is_temporary(f)]
    run_parallel(lambda rel: upload_file(local / rel, join(uri, rel)), [f for f in files if f != marker])
    if marker in files:
        upload_file(local / marker, join(uri, marker))


def download_dir(uri: str, dest: str | os.PathLike, marker: str) -> Path:
    """Copy a finished directory (its marker present) to `dest`, which appears complete by rename.
    When `dest` already exists, it is kept (another process of this node fetched it first)."""
    dest = Path(dest)
    tmp = atomicio.make_temp_dir(dest)
    try:
        if not sync_down(uri, tmp, marker=marker, fresh=True):
            raise FileNotFoundError(f"{uri} is not a finished directory (no {marker})")
        atomicio.publish_dir(tmp, dest, lambda folder: (folder / marker).is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def fetch_dir(uri: str, marker: str) -> Path:
    """This node's copy of a finished content-addressed directory (downloaded once)."""
    dest = cache_path(uri)
    if not (dest / marker).is_file():
        if dest.exists():
            shutil.rmtree(dest, ignore_errors=True)   # never complete: only whole copies are kept
        download_dir(uri, dest, marker)
    return dest


def fetch_file(uri: str, fresh: bool = False, missing_ok: bool = False) -> Path | None:
    """This node's copy of a file. A copy already in the cache is used unless `fresh` (files that
    change). Missing at the URI: None with `missing_ok`, else FileNotFoundError."""
    from pyarrow.fs import FileType
    dest = cache_path(uri)
    if not fresh and dest.is_file():
        return dest
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != FileType.File:
        if fresh:
            dest.unlink(missing_ok=True)
        if missing_ok:
            return None
        raise FileNotFoundError(f"{uri} does not exist")
    _download(fs, path, dest)
    return dest


def sync_down(uri: str, dest: str | os.PathLike, skip: tuple[str, ...] = (), marker: str | None = None,
              fresh: bool = False) -> int:
    """Bring `dest` up to date with the files under `uri`: with `marker`, only when the directory
    holds it; a file already in `dest` with the same size is kept unless `fresh` (a directory whose
    files change); files only in `dest` stay. Returns the number of files copied."""
    dest = Path(dest)
    listing = _listing(uri)
    if marker is not None and marker not in listing:
        return 0
    fs, path = resolve(uri)
    todo = [rel for rel, size in listing.items()
            if not _is_temporary(rel) and posixpath.basename(rel) not in skip
            and (fresh or not ((dest / rel).is_file() and (dest / rel).stat().st_size == size))]
    run_parallel(lambda rel: _download(fs, f"{path.rstrip('/')}/{rel}", dest / rel), todo)
    return len(todo)


def remove(uri: str) -> None:
    """Delete a file or directory at the URI (absent: nothing to do) and this node's copy."""
    from pyarrow.fs import FileType
    fs, path = resolve(uri)
    kind = fs.get_file_info(path).type
    if kind == FileType.Directory:
        fs.delete_dir(path)
    elif kind == FileType.File:
        fs.delete_file(path)
    local = cache_path(uri)
    if local.is_dir():
        shutil.rmtree(local, ignore_errors=True)
    else:
        local.unlink(missing_ok=True)


# ---- finished directories ---------------------------------------------------------------------------

def is_done(uri: str, marker: str) -> bool:
    """Whether the directory's marker is at the URI (a positive answer is remembered)."""
    if uri in _done:
        return True
    if exists(join(uri, marker)):
        with _done_lock:
            _done.add(uri)
        return True
    return False


def scan_done(root: str, marker: str) -> int:
    """Remember every finished directory under `root` with one recursive listing (instead of one
    request per directory); returns how many there are."""
    found = {join(root, posixpath.dirname(rel)) for rel in _listing(root)
             if posixpath.basename(rel) == marker and posixpath.dirname(rel)}
    with _done_lock:
        _done.update(found)
    return len(found)


def publish_dir(build: str | os.PathLike, uri: str, marker: str) -> None:
    """Upload a finished local build directory, marker last; then keep it as this node's copy.
    Already finished at the URI (a retried task lost the race): the build is dropped."""
    build = Path(build)
    if not is_done(uri, marker):
        upload_dir(build, uri, marker)
        with _done_lock:
            _done.add(uri)
    # this node's copy: a complete one already there is kept, an incomplete one replaced
    atomicio.publish_dir(build, cache_path(uri), lambda folder: (folder / marker).is_file())


def staging_dir(uri: str) -> Path:
    """A fresh local directory in which to build what will be published at `uri`."""
    return atomicio.make_temp_dir(cache_path(uri))


# ---- checks ---------------------------------------------------------------------------------------------

def check(uri: str, timeout: float | None = None, write: bool = True) -> None:
    """Fail early, in one line naming the URI, when the store cannot be used: its filesystem
    cannot be created (unknown scheme, a missing library), or looking at it (and with `write`,
    writing and deleting a small object there) fails or takes longer than `timeout` seconds
    ($PARTFER_STORAGE_TIMEOUT, default 60; an unreachable endpoint otherwise retries for minutes)."""
    if timeout is None:
        timeout = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            from pyarrow.fs import FileType
            fs, path = resolve(uri)
            if fs.get_file_info(path).type == FileType.File:
                raise StorageError(f"storage {uri} is a file, not a folder")
            if not write:
                outcome.append(None)
                return
            probe_uri = join(uri, f".partfer-probe-{atomicio.temp_path('p').name[-12:]}")
            put_bytes(probe_uri, b"")
            fs.delete_file(resolve(probe_uri)[1])
            outcome.append(None)
        except BaseException as err:      # reported to the caller below
            outcome.append(err)

    worker = threading.Thread(target=probe, daemon=True, name="partfer-storage-check")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise StorageError(f"storage {uri}: no answer within {timeout:g} s (network, endpoint or "
                           f"credentials?); {TIMEOUT_ENV} sets the limit")
    err = outcome[0]
    if isinstance(err, StorageError):
        raise err
    if err is not None:
        doing = "write" if write else "read"
        raise StorageError(f"storage {uri}: cannot {doing} there ({_one_line(err)})") from None
