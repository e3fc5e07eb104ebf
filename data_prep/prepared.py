"""Read prepared data sets: pyarrow + numpy only.

The training machine may have neither Ray nor OpenCV nor dlib, so nothing here imports them;
this module and data_prep.schema are all the training side needs.
"""
from __future__ import annotations

import json
import os
from collections import Counter
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from partfer.data_prep.errors import PreparedDataError
from partfer.data_prep.ibug68 import N_POINTS
from partfer.data_prep.schema import ADDED_COLUMNS, SCHEMA, SUCCESS_MARKER

PREPARED_DIR = "prepared"
MANIFEST = "manifest.json"
REJECTS = "rejects.csv"
DATA_DIR = "data"
HASH_LENGTH = 12


@dataclass
class PreparedData:
    """A prepared data set in memory, rows sorted by sample_id."""
    name: str
    path: str
    manifest: dict
    sample_ids: list[str]
    images: np.ndarray          # uint8 (N, H, W)
    landmarks: np.ndarray       # float32 (N, 68, 2) in [0, 1] crop coordinates; NaN where not landmarks_ok
    labels: list[str]
    subjects: list[str]
    groups: list[str]
    splits: list[str]
    source_paths: list[str]
    classes: list[str]          # canonical order, from the manifest
    # bool (N,): the row has real landmarks. False: the annotator failed; its points are NaN, so
    # it must not be a landmark-stage target (it stays a classification sample).
    landmarks_ok: np.ndarray = None     # type: ignore[assignment]
    # bool (N,): the detector found no face; the crop is the centred-square fallback.
    face_fallback: np.ndarray = None    # type: ignore[assignment]

    def __post_init__(self) -> None:
        n = len(self.sample_ids)
        if self.landmarks_ok is None:
            self.landmarks_ok = np.ones(n, dtype=bool)
        if self.face_fallback is None:
            self.face_fallback = np.zeros(n, dtype=bool)

    def __len__(self) -> int:
        return len(self.sample_ids)


def prepared_dir_pattern(name: str) -> re.Pattern:
    """`<name>-<12 hex>` exactly: unfinished `.tmp-` build folders never match."""
    return re.compile(rf"{re.escape(name)}-[0-9a-f]{{{HASH_LENGTH}}}")


def find_prepared(out_root: str | os.PathLike, name: str) -> list[str]:
    """Finished prepared directories of data set `name` under out_root, newest first."""
    base = Path(out_root) / PREPARED_DIR
    if not base.is_dir():
        return []
    pattern = prepared_dir_pattern(name)
    found = [p for p in base.iterdir()
             if p.is_dir() and pattern.fullmatch(p.name) and (p / SUCCESS_MARKER).is_file()]
    return [str(p) for p in sorted(found, key=lambda p: ((p / SUCCESS_MARKER).stat().st_mtime, p.name),
                                   reverse=True)]


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of a finished prepared directory; PreparedDataError when unfinished."""
    folder = Path(path)
    if not (folder / SUCCESS_MARKER).is_file():
        raise PreparedDataError(f"{folder} is not a finished prepared data set (no {SUCCESS_MARKER}); "
                                f"re-run `partfer prep`")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise PreparedDataError(f"cannot read {folder / MANIFEST}: {err}") from None
    if not isinstance(manifest, dict):
        raise PreparedDataError(f"{folder / MANIFEST}: not a prepared data set's manifest (a JSON "
                                f"{type(manifest).__name__}, not an object)")
    return manifest


def read_subjects(path: str | os.PathLike) -> list[str]:
    """The subject column of a finished prepared directory's rows (one per row), read alone."""
    files = sorted((Path(path) / DATA_DIR).glob("*.parquet"))
    subjects: list[str] = []
    for f in files:
        try:
            subjects += pq.read_table(f, columns=["subject"]).column("subject").to_pylist()
        except (pa.ArrowException, OSError, KeyError) as err:
            reason = " ".join(str(err).split())
            raise PreparedDataError(f"cannot read {f}: {reason} (a damaged or truncated file: delete "
                                    f"{f.parent.parent} and prepare it again)") from None
    return subjects


def check_counts(folder: Path, manifest: dict, subjects: list[str]) -> None:
    """PreparedDataError when manifest.json's row count (n_ok) or rows per subject disagree with
    the rows in data/ (one per entry of `subjects`): the manifest's numbers are printed and
    trusted, so they must describe the data that is there."""
    where = Path(folder) / MANIFEST
    n_ok = manifest.get("n_ok")
    if n_ok is not None and (isinstance(n_ok, bool) or not isinstance(n_ok, int) or n_ok != len(subjects)):
        raise PreparedDataError(f"{where}: n_ok says {n_ok!r} images but data/ holds {len(subjects)} rows")
    counted = (manifest.get("counts") or {}).get("subject") if isinstance(manifest.get("counts"), dict) else None
    if counted is None:
        return
    present = Counter(subjects)
    if not isinstance(counted, dict):
        raise PreparedDataError(f"{where}: counts.subject is not a mapping of subject to rows")
    for subject in sorted(set(counted) | set(present), key=str):
        if counted.get(subject, 0) != present.get(subject, 0):
            raise PreparedDataError(f"{where}: counts.subject says {counted.get(subject, 0)!r} rows of subject "
                                    f"{subject!r} ({len(counted)} subjects in all) but data/ holds "
                                    f"{present.get(subject, 0)} ({len(present)} subjects in all)")


def load_prepared(path: str | os.PathLike) -> PreparedData:
    """Load images, landmarks and labels of a finished prepared directory."""
    folder = Path(path)
    manifest = read_manifest(folder)
    files = sorted((folder / DATA_DIR).glob("*.parquet"))
    if not files:
        raise PreparedDataError(f"{folder / DATA_DIR} holds no parquet files")
    table = with_added_columns(pa.concat_tables([read_part(f) for f in files]))
    missing = [f.name for f in SCHEMA if f.name not in table.column_names]
    if missing:
        raise PreparedDataError(f"{folder} lacks columns {missing} of data_prep.schema")
    table = table.select(SCHEMA.names).cast(SCHEMA).sort_by("sample_id")
    n = table.num_rows
    heights = set(table.column("height").to_pylist())
    widths = set(table.column("width").to_pylist())
    if len(heights) != 1 or len(widths) != 1:
        raise PreparedDataError(f"{folder}: crops of mixed sizes {sorted(heights)}x{sorted(widths)}")
    h, w = heights.pop(), widths.pop()
    images = np.frombuffer(b"".join(table.column("image").to_pylist()), dtype=np.uint8)
    if images.size != n * h * w:
        raise PreparedDataError(f"{folder}: image bytes do not match {n} crops of {h}x{w}")
    check_classes(folder, manifest, table.column("label").to_pylist())
    check_counts(folder, manifest, table.column("subject").to_pylist())
    landmarks = table.column("landmarks").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    column = lambda name: table.column(name).to_pylist()  # noqa: E731
    return PreparedData(
        name=manifest.get("name", folder.name), path=str(folder), manifest=manifest,
        sample_ids=column("sample_id"), images=images.reshape(n, h, w).copy(),
        landmarks=landmarks.astype(np.float32).reshape(n, N_POINTS, 2),
        labels=column("label"), subjects=column("subject"), groups=column("group"),
        splits=column("split"), source_paths=column("source_path"),
        classes=list(manifest.get("classes", [])),
        landmarks_ok=np.asarray(column("landmarks_ok"), dtype=bool),
        face_fallback=np.asarray(column("face_fallback"), dtype=bool),
    )


def read_part(path: Path) -> pa.Table:
    """One Parquet file of a prepared folder; PreparedDataError naming it when it is damaged."""
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        reason = " ".join(str(err).split())
        raise PreparedDataError(f"cannot read {path}: {reason} (a damaged or truncated file: delete "
                                f"{path.parent.parent} and prepare it again)") from None


def check_classes(folder: Path, manifest: dict, labels: list[str]) -> None:
    """PreparedDataError when manifest.json's classes disagree with the labels in the data.

    Every label must be a class; where the manifest counts labels (data_prep writes it so), the
    classes must be exactly the labels present and the counts must match.
    """
    classes = list(manifest.get("classes", []))
    present = dict(sorted(Counter(labels).items()))
    where = f"{folder}: {MANIFEST} lists classes {classes} but data/ holds labels {present}"
    if not set(present) <= set(classes):
        raise PreparedDataError(where)
    counted = manifest.get("counts", {}).get("label")
    if counted is not None and (set(classes) != set(present) or dict(sorted(counted.items())) != present):
        raise PreparedDataError(f"{where} (counted there as {counted})")


def with_added_columns(table: pa.Table) -> pa.Table:
    """A table of a folder prepared before the columns of schema.ADDED_COLUMNS existed, with them
    filled in (such folders kept only detected faces with landmarks); others unchanged."""
    if "detector" in table.column_names and "face_source" not in table.column_names:
        table = table.append_column("face_source", table.column("detector"))
    for name, value in ADDED_COLUMNS.items():
        if name not in table.column_names:
            table = table.append_column(name, pa.array([value] * table.num_rows, type=SCHEMA.field(name).type))
    return table
