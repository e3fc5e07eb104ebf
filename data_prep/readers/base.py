"""What every reader returns, and the registry that maps a layout name to its reader.

A reader only lists files and derives labels/subjects from names and folders; it never opens an
image. Each layout (JAFFE, folder-per-class, CK+, SFEW, FER2013) is one module that
registers one function, so adding a layout touches nothing else.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from data_prep.errors import DatasetRootError, UnknownNameError

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
_READERS: dict[str, ReaderFn] = {}


def register_reader(name: str) -> Callable[[ReaderFn], ReaderFn]:
    """Decorator: make `fn(root: Path, **options) -> ReadResult` the reader of layout `name`."""
    def decorate(fn: ReaderFn) -> ReaderFn:
        if name in _READERS and _READERS[name] is not fn:
            raise ValueError(f"reader for layout {name!r} registered twice")
        _READERS[name] = fn
        return fn
    return decorate


def known_layouts() -> list[str]:
    _load_builtin_readers()
    return sorted(_READERS)


def get_reader(name: str) -> ReaderFn:
    _load_builtin_readers()
    if name not in _READERS:
        raise UnknownNameError(f"unknown data set layout {name!r}; known layouts: {', '.join(sorted(_READERS))}")
    return _READERS[name]


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
    return reader(root_path, **options).sort()


def check_root(root: str | os.PathLike) -> Path:
    """The root as an absolute path, or DatasetRootError when it is missing, not a folder or empty."""
    path = Path(root).expanduser().resolve()
    if not path.exists():
        raise DatasetRootError(f"data set root does not exist: {path}")
    if not path.is_dir():
        raise DatasetRootError(f"data set root is not a folder: {path}")
    if not any(path.iterdir()):
        raise DatasetRootError(f"data set root is empty: {path}")
    return path


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def rel(path: Path, root: Path) -> str:
    """Path relative to the root with '/' separators (stable ids across operating systems)."""
    return path.relative_to(root).as_posix()


def landmarks_file(root: Path, rel_image: Path) -> str | None:
    """root/landmarks/<same sub-folders>/<stem>.txt when it exists, else None."""
    candidate = root / LANDMARKS_DIR / rel_image.parent / (rel_image.stem + ".txt")
    return str(candidate) if candidate.is_file() else None


def _load_builtin_readers() -> None:
    # Imported here, not at module top, because each reader module imports this one.
    from data_prep.readers import ckplus, fer2013, folder, jaffe, sfew  # noqa: F401
