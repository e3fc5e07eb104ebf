"""JAFFE: one flat folder of `KA.AN1.39.tiff` (subject . expression code + index . image id).

The subject and expression come only from the name, so a name that does not parse is a reject,
never a guess. Ground-truth points, when present, sit in `landmarks/<stem>.txt`.
"""
from __future__ import annotations

import re
from pathlib import Path

from data_prep import labels
from data_prep.readers.base import (
    ReadResult, Record, Reject, is_image_file, landmarks_file, register_reader,
)

NAME_PATTERN = re.compile(r"^(?P<subject>[A-Za-z]+)\.(?P<code>[A-Za-z]+)(?P<index>\d+)\.(?P<id>\d+)$")
NAME_FORMAT = "SUBJECT.CODEn.ID (e.g. KA.AN1.39.tiff)"


@register_reader("jaffe")
def read_jaffe(root: Path) -> ReadResult:
    records: list[Record] = []
    rejects: list[Reject] = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            continue   # only landmarks/ means something; other folders are not part of JAFFE
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
