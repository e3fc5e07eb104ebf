"""Generic folder-per-class layout: `<root>/<class>/<file>` (e.g. CK+48: anger/S010_004_00000017.png).

Class folder names go through the shared vocabulary. Subject ids are not part of this layout, so
they come from an optional regex on the file stem; without one every image is its own subject and
the ReadResult says that folds will not be subject-independent.
"""
from __future__ import annotations

import re
from pathlib import Path

from partfer.data_prep import labels
from partfer.data_prep.readers.base import (
    BROKEN_LINK, LANDMARKS_DIR, ReadResult, Record, Reject, is_broken_link, is_image_file, landmarks_file,
    list_files, register_reader, rel,
)

NO_REGEX_NOTE = ("no subject_regex given: each image is its own subject, so folds are not "
                 "subject-independent (pass e.g. --subject-regex '^(S\\d+)_')")


@register_reader("folder")
def read_folder(root: Path, subject_regex: str | None = None) -> ReadResult:
    pattern = compile_subject_regex(subject_regex) if subject_regex else None
    records: list[Record] = []
    rejects: list[Reject] = []
    for entry in sorted(root.iterdir()):
        if not entry.is_dir():
            rejects.append(Reject(entry.name, BROKEN_LINK if is_broken_link(entry) else "file outside any class folder"))
            continue
        if entry.name == LANDMARKS_DIR:
            continue
        label = labels.normalise(entry.name)
        files, unusable = list_files(entry, root)
        rejects += unusable
        for file in files:
            rel_path = rel(file, root)
            if label is None:
                rejects.append(Reject(rel_path, f"unknown class folder {entry.name!r}"))
            elif not is_image_file(file):
                rejects.append(Reject(rel_path, "not an image file"))
            else:
                ids = subject_and_group(file.stem, pattern)
                if isinstance(ids, str):
                    rejects.append(Reject(rel_path, ids))
                    continue
                records.append(Record(
                    path=str(file), rel_path=rel_path, label=label, subject=ids[0], group=ids[1],
                    split="all", landmarks_path=landmarks_file(root, Path(rel_path)),
                ))
    notes = [] if pattern is not None else [NO_REGEX_NOTE]
    return ReadResult(records, rejects, notes)


def compile_subject_regex(subject_regex: str) -> re.Pattern:
    """The regex, checked to name a subject: a group called 'subject', or exactly one group."""
    try:
        pattern = re.compile(subject_regex)
    except re.error as err:
        raise ValueError(f"subject_regex {subject_regex!r} is not a valid regex: {err}") from None
    if "subject" not in pattern.groupindex and pattern.groups != 1:
        raise ValueError(f"subject_regex {subject_regex!r} needs one group or a named group "
                         f"'subject' (it has {pattern.groups} groups)")
    return pattern


def subject_and_group(stem: str, pattern: re.Pattern | None) -> tuple[str, str] | str:
    """(subject, group) for a file stem, or the reason the file is rejected.

    A captured group is prefixed with the subject unless it already contains it: sequence
    numbers like CK+'s '004' repeat across subjects and must not merge different people.
    """
    if pattern is None:
        return stem, stem
    match = pattern.search(stem)
    if match is None:
        return f"file name does not match subject_regex {pattern.pattern!r}"
    subject = match["subject"] if "subject" in pattern.groupindex else match.group(1)
    if not subject:
        return f"subject_regex {pattern.pattern!r} captured an empty subject"
    group = match["group"] if "group" in pattern.groupindex else None
    if not group:
        return subject, subject
    return subject, group if subject in group else f"{subject}.{group}"
