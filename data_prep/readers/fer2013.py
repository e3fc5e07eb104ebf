"""FER2013: one CSV, `fer2013.csv`, columns `emotion,pixels,Usage` (48x48 grayscale faces as rows).

The images are rows, not files: a record's path names its row (`<root>/fer2013.csv#row=000123`),
which data_prep.image_io decodes through data_prep.csv_images, so preprocessing stays the same.
Usage gives the split (Training -> train, PublicTest -> val, PrivateTest -> test). FER2013 has no
subject ids, so every row is its own subject and the ReadResult says so.
"""
from __future__ import annotations

from pathlib import Path

from partfer.data_prep.csv_images import (
    PIXELS_COLUMN, count_pixel_values, iter_data_lines, parse_line, read_header, row_member,
)
from partfer.data_prep.errors import DatasetRootError
from partfer.data_prep.image_members import member_path
from partfer.data_prep.readers.base import ReadResult, Record, Reject, register_reader, rel

CSV_NAME = "fer2013.csv"
SIDE = 48
N_PIXELS = SIDE * SIDE
# FER2013's emotion codes 0-6, in canonical names.
EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
USAGE_SPLITS = {"training": "train", "publictest": "val", "privatetest": "test"}
EMOTION_COLUMN, USAGE_COLUMN = "emotion", "usage"

NO_SUBJECTS_NOTE = ("FER2013 has no subject ids: each row is its own subject (its protocol is the "
                    "Usage split, not subject-independent folds)")
NO_USAGE_NOTE = "the CSV has no Usage column: every row is in split 'all'"


class CsvLayoutError(ValueError):
    """The CSV cannot be FER2013 at all (its header lacks a needed column): a whole-run problem."""


@register_reader("fer2013")
def read_fer2013(root: Path, csv_name: str = CSV_NAME) -> ReadResult:
    csv_path = find_csv(root, csv_name)
    rejects = [Reject(rel(entry, root), f"not part of the FER2013 layout (only {csv_path.name} is read)")
               for entry in sorted(root.iterdir()) if entry != csv_path]
    columns = read_header(csv_path)
    missing = [c for c in (EMOTION_COLUMN, PIXELS_COLUMN) if c not in columns]
    if missing:
        raise CsvLayoutError(f"{csv_path}: header {','.join(columns) or '(empty)'} lacks column(s) "
                             f"{', '.join(missing)} (FER2013 has emotion,pixels,Usage)")
    records: list[Record] = []
    for row, text in iter_data_lines(csv_path):
        if not text.strip():
            continue                   # a blank line is not a row (e.g. a trailing newline)
        member = row_member(row)
        parsed = parse_row(text, columns)
        if isinstance(parsed, str):
            rejects.append(Reject(f"{csv_path.name}#{member}", f"line {row + 2}: {parsed}"))
            continue
        label, split = parsed
        records.append(Record(
            path=member_path(csv_path, member), rel_path=f"{csv_path.name}#{member}", label=label,
            subject=f"row{row:06d}", group=f"row{row:06d}", split=split,
        ))
    notes = [NO_SUBJECTS_NOTE] + ([] if USAGE_COLUMN in columns else [NO_USAGE_NOTE])
    return ReadResult(records, rejects, notes)


def find_csv(root: Path, csv_name: str) -> Path:
    """root/<csv_name>, matched case-insensitively; DatasetRootError when there is none."""
    for entry in sorted(root.iterdir()):
        if entry.is_file() and entry.name.lower() == csv_name.lower():
            return entry
    raise DatasetRootError(f"no {csv_name} in {root} (the FER2013 layout is one CSV with "
                           f"columns emotion,pixels,Usage)")


def parse_row(text: str, columns: list[str]) -> tuple[str, str] | str:
    """(canonical label, split) of one data line, or the reason the row is rejected.

    The pixels are checked for count and form here; their 0-255 range is checked when the row
    is decoded (a reject then too), which keeps listing a 36k-row file fast.
    """
    fields = parse_line(text, columns)
    if isinstance(fields, str):
        return fields
    emotion = fields[EMOTION_COLUMN].strip()
    if not (emotion.isascii() and emotion.isdigit()) or int(emotion) >= len(EMOTIONS):
        return f"emotion {emotion!r} is not a code 0-{len(EMOTIONS) - 1}"
    split = "all"
    if USAGE_COLUMN in fields:
        usage = fields[USAGE_COLUMN].strip()
        split = USAGE_SPLITS.get(usage.lower(), "")
        if not split:
            return f"unknown Usage {usage!r} (expected Training, PublicTest or PrivateTest)"
    count = count_pixel_values(fields[PIXELS_COLUMN])
    if isinstance(count, str):
        return count
    if count != N_PIXELS:
        return f"{count} pixel values, expected {N_PIXELS} ({SIDE}x{SIDE})"
    return EMOTIONS[int(emotion)], split
