"""JAFFE: one flat folder of `KA.AN1.39.tiff` (subject . expression code + index . image id).

The subject and expression come only from the name, so a name that does not parse is a reject,
never a guess. Ground-truth points, when present, sit in `landmarks/<stem>.txt`; files in other
subfolders are rejects.
"""
from __future__ import annotations

import re
from pathlib import Path

from partfer.data_prep import labels
from partfer.data_prep.readers.base import (
    BROKEN_LINK, LANDMARKS_DIR, NOT_REGULAR, ReadResult, Record, Reject, is_broken_link, is_image_file,
    landmarks_file, list_files, register_reader, rel,
)

NAME_PATTERN = re.compile(r"^(?P<subject>[A-Za-z]+)\.(?P<code>[A-Za-z]+)(?P<index>\d+)\.(?P<id>\d+)$")
NAME_FORMAT = "SUBJECT.CODEn.ID (e.g. KA.AN1.39.tiff)"
SUBFOLDER = f"inside a subfolder (JAFFE is one flat folder; only {LANDMARKS_DIR}/ is read)"


@register_reader("jaffe")
def read_jaffe(root: Path) -> ReadResult:
    records: list[Record] = []
    rejects: list[Reject] = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            if entry.name != LANDMARKS_DIR:
                rejects += subfolder_rejects(entry, root)
            continue
        if is_broken_link(entry):
            rejects.append(Reject(entry.name, BROKEN_LINK))
            continue
        if not entry.is_file():                 # a FIFO, socket or device: never opened
            rejects.append(Reject(entry.name, NOT_REGULAR))
            continue
        if not is_image_file(entry):
            rejects.append(Reject(entry.name, "not an image file"))
            continue
        parsed = parse_name(entry.name)
        if isinstance(parsed, str):
            rejects.append(Reject(entry.name, parsed))
            continue
        subject, code_with_index, label = parsed
        records.append(Record(
            path=str(entry), rel_path=entry.name, label=label, subject=subject,
            group=f"{subject}.{code_with_index}", split="all",
            landmarks_path=landmarks_file(root, Path(entry.name)),
        ))
    return ReadResult(records, rejects)


def subfolder_rejects(folder: Path, root: Path) -> list[Reject]:
    """JAFFE is one flat folder: every file of another folder is a reject (never skipped)."""
    files, rejects = list_files(folder, root)
    return rejects + [Reject(rel(f, root), SUBFOLDER) for f in files]


def parse_name(file_name: str) -> tuple[str, str, str] | str:
    """(subject, code+index, canonical label) from a JAFFE file name, or the reason it is rejected."""
    stem = Path(file_name).stem
    match = NAME_PATTERN.match(stem)
    if match is None:
        return f"file name does not follow {NAME_FORMAT}"
    code = match["code"]
    label = labels.normalise(code)
    if label is None:
        return f"unknown expression code {code!r} (known: AN DI FE HA NE SA SU)"
    return match["subject"], f"{code}{match['index']}", label
