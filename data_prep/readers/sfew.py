"""SFEW 2.0: `Train/<Class>/*.png` and `Val/<Class>/*.png` (movie frames or aligned faces).

The split folders are the protocol (train on Train, report on Val), so they become the records'
split. The Test folder has no public labels: its images are rejects, never silently dropped.
SFEW has no subject ids; an optional regex on the file stem (e.g. the movie name) groups images,
otherwise each image is its own subject and the ReadResult says so. Ground-truth points, when
present, sit in a sidecar tree `landmarks/<Split>/<Class>/<stem>.txt`.
"""
from __future__ import annotations

from pathlib import Path

from partfer.data_prep import labels
from partfer.data_prep.errors import DatasetRootError, RejectError
from partfer.data_prep.readers.base import (
    BROKEN_LINK, LANDMARKS_DIR, ReadResult, Record, Reject, is_broken_link, is_image_file, landmarks_file,
    list_files, register_reader, rel,
)
from partfer.data_prep.readers.folder import compile_subject_regex, subject_and_group

# Split folder names (lower case) -> split; SFEW ships Train, Val and an unlabelled Test.
SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
NO_REGEX_NOTE = ("SFEW has no subject ids: each image is its own subject (the protocol is the "
                 "Train/Val split; pass subject_regex, e.g. '^(.+?)_\\d+_' for the movie name, to group images)")
UNLABELLED_TEST = "unlabelled test image (SFEW's test labels are not public)"


@register_reader("sfew")
def read_sfew(root: Path, subject_regex: str | None = None) -> ReadResult:
    pattern = compile_subject_regex(subject_regex) if subject_regex else None
    records: list[Record] = []
    rejects: list[Reject] = []
    split_dirs = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and entry.name == LANDMARKS_DIR:
            continue
        split = SPLITS.get(entry.name.lower()) if entry.is_dir() else None
        if split is None and is_broken_link(entry):
            rejects.append(Reject(rel(entry, root), BROKEN_LINK))
        elif split is None:
            rejects.append(Reject(rel(entry, root), "not part of the SFEW layout (only Train/, Val/ "
                                                    f"and Test/ are read, and {LANDMARKS_DIR}/)"))
        else:
            split_dirs.append((entry, split))
    if not any(split in ("train", "val") for _, split in split_dirs):
        raise DatasetRootError(f"no Train/ or Val/ folder in {root}: the SFEW layout is "
                               f"Train/<Class>/*.png and Val/<Class>/*.png")
    for split_dir, split in split_dirs:
        files, unusable = list_files(split_dir, root)
        rejects += unusable
        for path in files:
            rel_path = rel(path, root)
            try:
                label = label_of(path, split_dir, split)
            except RejectError as err:
                rejects.append(Reject(rel_path, str(err)))
                continue
            ids = subject_and_group(path.stem, pattern)
            if isinstance(ids, str):
                rejects.append(Reject(rel_path, ids))
                continue
            records.append(Record(
                path=str(path), rel_path=rel_path, label=label, subject=ids[0], group=ids[1],
                split=split, landmarks_path=landmarks_file(root, Path(rel_path)),
            ))
    notes = [] if pattern is not None else [NO_REGEX_NOTE]
    return ReadResult(records, rejects, notes)


def label_of(path: Path, split_dir: Path, split: str) -> str:
    """The canonical label of one file under a split folder; RejectError(reason) when it has none."""
    parts = path.relative_to(split_dir).parts
    if not is_image_file(path):
        raise RejectError("not an image file")
    if len(parts) == 1:
        raise RejectError(UNLABELLED_TEST if split == "test" else "image outside any class folder")
    label = labels.normalise(parts[0])
    if label is None:
        raise RejectError(f"unknown class folder {parts[0]!r}")
    return label
