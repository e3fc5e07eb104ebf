"""What every reader returns, and the registry that maps a layout name to its reader.

A reader only lists files and derives labels/subjects from names and folders; it never opens an
image. Each layout (JAFFE, folder-per-class, CK+, SFEW, FER2013) is one module that
registers one function; the readers package imports every such module, so adding a layout is its
module and one line in readers/__init__.py.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from partfer.data_prep.errors import DatasetRootError
from partfer.data_prep.file_names import is_utf8_name, name_text
from partfer.data_prep.registry import Registry

IMAGE_EXTENSIONS = frozenset({".tiff", ".tif", ".png", ".jpg", ".jpeg", ".bmp"})
LANDMARKS_DIR = "landmarks"   # ground-truth points beside the images: landmarks/<stem>.txt


@dataclass(frozen=True)
class Record:
    """One usable input image and everything known about it before preprocessing."""
    path: str                          # absolute path of the image
    rel_path: str                      # relative to the data set root, '/'-separated
    label: str                         # canonical expression (data_prep.labels)
    subject: str                       # person id: folds are subject-independent
    group: str                         # sequence / session: all its images share a fold
    split: str                         # "all" for cross-validated sets, "train"/"val" otherwise
    landmarks_path: str | None = None  # 68 "x y" lines in source pixels, when the set ships them


@dataclass(frozen=True)
class Reject:
    """An input that will not be used, and why (written to rejects.csv)."""
    source_path: str   # relative to the data set root, '/'-separated
    reason: str


@dataclass
class ReadResult:
    records: list[Record]
    rejects: list[Reject]
    notes: list[str] = field(default_factory=list)   # warnings about the whole set (e.g. no subject ids)

    def sort(self) -> "ReadResult":
        """Deterministic order, so hashes, fold assignment and outputs do not depend on the OS."""
        self.records.sort(key=lambda r: r.rel_path)
        self.rejects.sort(key=lambda r: (r.source_path, r.reason))
        return self


ReaderFn = Callable[..., ReadResult]
READERS: Registry[ReaderFn] = Registry("data set layout", known="known layouts", unique=True)


def register_reader(name: str) -> Callable[[ReaderFn], ReaderFn]:
    """Decorator: make `fn(root: Path, **options) -> ReadResult` the reader of layout `name`."""
    return READERS.decorator(name)


def known_layouts() -> list[str]:
    return READERS.names()


def get_reader(name: str) -> ReaderFn:
    return READERS.get(name)


def read_dataset(layout: str, root: str | os.PathLike, **options) -> ReadResult:
    """List a data set: records to preprocess, rejects with reasons, notes. Sorted."""
    reader = get_reader(layout)
    try:
        inspect.signature(reader).bind(Path(root), **options)
    except TypeError:
        accepted = [p for p in inspect.signature(reader).parameters if p != "root"]
        raise ValueError(f"layout {layout!r} does not take options {sorted(options)}; "
                         f"it takes: {accepted or 'none'}") from None
    root_path = check_root(root)
    return reject_same_text(reader(root_path, **options)).sort()


def reject_same_text(read: ReadResult) -> ReadResult:
    """Outputs name a sample by its UTF-8 text (data_prep.file_names); a name that is not UTF-8
    and whose text is another file's name would merge two samples, so it becomes a reject."""
    texts: dict[str, str] = {}
    for record in sorted(read.records, key=lambda r: (not is_utf8_name(r.rel_path), r.rel_path)):
        texts.setdefault(name_text(record.rel_path), record.rel_path)
    kept = []
    for record in read.records:
        first = texts[name_text(record.rel_path)]
        if first == record.rel_path:
            kept.append(record)
        else:
            read.rejects.append(Reject(record.rel_path, SAME_TEXT.format(other=name_text(first))))
    read.records = kept
    return read


def check_root(root: str | os.PathLike) -> Path:
    """The root as an absolute path, or DatasetRootError when it is missing, not a folder,
    unreadable or empty."""
    path = Path(root).expanduser().resolve()
    try:
        exists, is_dir = path.exists(), path.is_dir()
        if exists and is_dir:
            with os.scandir(path) as entries:
                empty = next(entries, None) is None
    except OSError as err:
        raise DatasetRootError(f"cannot read data set root {path}: {os_reason(err)}") from None
    if not exists:
        raise DatasetRootError(f"data set root does not exist: {path}")
    if not is_dir:
        raise DatasetRootError(f"data set root is not a folder: {path}")
    if empty:
        raise DatasetRootError(f"data set root is empty: {path}")
    return path


def os_reason(err: OSError) -> str:
    """'PermissionError: Permission denied' (no path: the caller names it)."""
    return f"{type(err).__name__}: {err.strerror or err}"


BROKEN_LINK = "broken symbolic link (its target is missing, or it points to itself)"
NOT_REGULAR = "not a regular file"
SAME_TEXT = ("its name is not UTF-8 and, written as UTF-8 text (bytes as \\xNN), is the name of "
             "another file: {other}")


def unreadable_folder(err: OSError) -> str:
    return f"unreadable folder, its files cannot be listed ({os_reason(err)})"


def is_broken_link(path: Path) -> bool:
    """A symbolic link that leads to no file or folder (dangling, or a loop)."""
    return path.is_symlink() and not path.exists()


def list_files(folder: Path, root: Path) -> tuple[list[Path], list[Reject]]:
    """Every file under `folder` (sorted, symlinked folders followed once), and a reject for each
    entry that cannot be used: a broken link, a folder that cannot be listed (the folder itself:
    its files are unknown), anything that is neither file nor folder. Nothing is skipped silently."""
    files: list[Path] = []
    rejects: list[Reject] = []
    _walk(folder, root, files, rejects, set())
    return sorted(files), rejects


def _walk(folder: Path, root: Path, files: list[Path], rejects: list[Reject], seen: set) -> None:
    try:
        stat = folder.stat()
        key = (stat.st_dev, stat.st_ino)
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as err:
        rejects.append(Reject(rel(folder, root), unreadable_folder(err)))
        return
    if key in seen:
        rejects.append(Reject(rel(folder, root), "folder already listed (a symbolic link loop)"))
        return
    seen.add(key)
    for entry in entries:
        path = Path(entry.path)
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()
        except OSError:
            is_dir = is_file = False
        if is_dir:
            _walk(path, root, files, rejects, seen)
        elif is_file:
            files.append(path)
        elif entry.is_symlink():
            rejects.append(Reject(rel(path, root), BROKEN_LINK))
        else:
            rejects.append(Reject(rel(path, root), NOT_REGULAR))


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def rel(path: Path, root: Path) -> str:
    """Path relative to the root with '/' separators (stable ids across operating systems)."""
    return path.relative_to(root).as_posix()


def landmarks_file(root: Path, rel_image: Path) -> str | None:
    """root/landmarks/<same sub-folders>/<stem>.txt when it exists, else None."""
    candidate = root / LANDMARKS_DIR / rel_image.parent / (rel_image.stem + ".txt")
    return str(candidate) if candidate.is_file() else None

