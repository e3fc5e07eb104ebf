"""Content-addressed prepared directories: the hash, the atomic build, the manifest.

A prepared directory is named by a hash of everything that determines its content (input files
by path, size and content digest (fingerprint.py), layout, options, settings, PREP_VERSION), so a
re-run with the same inputs, or a copy of them elsewhere, reuses it and any change prepares a new one. It is built under a temporary name (atomicio) and renamed at the
end: a killed run never leaves a directory that looks finished.
"""
from __future__ import annotations

import collections
import csv
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from partfer import atomicio
from partfer.data_prep import labels
from partfer.data_prep.file_names import name_hex, name_text, original_name
from partfer.data_prep.fingerprint import Entry
from partfer.data_prep.prepared import DATA_DIR, HASH_LENGTH, MANIFEST, PREPARED_DIR, REJECTS
from partfer.data_prep.readers.base import Reject
from partfer.data_prep.schema import FALLBACK_SOURCE, SCHEMA, SUCCESS_MARKER

# Bump when the preprocessing code changes what it writes: old prepared data is then not reused.
# 2: fallback crops and landmark-less rows instead of rejects; the SSD's echo boxes dropped.
PREP_VERSION = "2"

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
ROWS_PER_FILE = 2048
VERSIONED_PACKAGES = ("opencv-python-headless", "dlib-bin", "dlib", "ray", "numpy", "pyarrow",
                      "face-alignment")


def check_name(name: str) -> str:
    if not SAFE_NAME.fullmatch(name):
        raise ValueError(f"data set name {name!r} must be letters, digits and _ . + - "
                         f"(it names a folder)")
    return name


def hash_inputs(name: str, layout: str, options: dict, settings: dict,
                fingerprint: list[Entry]) -> dict:
    """What the hash is made of (the file list by its digest, to keep the manifest small)."""
    files = hashlib.sha256(json.dumps(fingerprint, separators=(",", ":")).encode()).hexdigest()
    return {"prep_version": PREP_VERSION, "name": name, "layout": layout, "options": options,
            "settings": settings, "n_input_files": len(fingerprint), "input_files_sha256": files}


def content_hash(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:HASH_LENGTH]


def prepared_path(out_root: str | os.PathLike, name: str, digest: str) -> Path:
    return Path(out_root) / PREPARED_DIR / f"{name}-{digest}"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def reason_kind(reason: str) -> str:
    """A reject reason without its file-specific detail, for the manifest's summary."""
    return reason.split(":")[0].split(" (")[0].strip()


def write_rejects_csv(path: Path, rejects: list[Reject]) -> None:
    """source_path, reason, source_path_hex: UTF-8 text whatever the names' bytes (the hex column
    holds a name's bytes when they are not UTF-8; data_prep.file_names)."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["source_path", "reason", "source_path_hex"])
            for reject in sorted(rejects, key=lambda r: (r.source_path, r.reason)):
                writer.writerow([name_text(reject.source_path), name_text(reject.reason),
                                 name_hex(reject.source_path)])
    atomicio.write_with(path, write)


def read_rejects_csv(path: str | os.PathLike) -> list[Reject]:
    """The rejects with their names as the file system gives them (rejects.csv written before the
    hex column existed hold UTF-8 names only)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [Reject(original_name(row["source_path"], row.get("source_path_hex")), row["reason"])
                for row in csv.DictReader(fh)]


class PreparedBuilder:
    """Collects one data set's accepted rows and rejects in a temp folder, then publishes it."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.tmp = atomicio.make_temp_dir(final)     # a killed run's leftovers are cleaned by the next
        (self.tmp / DATA_DIR).mkdir()
        self.pending: list[pa.Table] = []
        self.n_pending = 0
        self.n_files = 0
        self.rejects: list[Reject] = []
        self.counts: dict[str, collections.Counter] = {k: collections.Counter() for k in ("label", "subject", "split")}
        self.n_ok = 0
        self.n_clipped_images = 0
        self.n_clipped_points = 0
        self.fallback_by_split: collections.Counter = collections.Counter()
        self.no_landmarks_by_split: collections.Counter = collections.Counter()
        self.no_landmarks_by_reason: collections.Counter = collections.Counter()

    def add_rows(self, table: pa.Table, clipped_points: list[int]) -> None:
        """Accepted rows (any column order; cast to the schema here)."""
        if table.num_rows == 0:
            return
        table = table.select(SCHEMA.names).cast(SCHEMA)
        for key, counter in self.counts.items():
            counter.update(table.column(key).to_pylist())
        self.n_ok += table.num_rows
        self.n_clipped_images += sum(1 for n in clipped_points if n)
        self.n_clipped_points += sum(clipped_points)
        self._count_flags(table)
        self.pending.append(table)
        self.n_pending += table.num_rows
        if self.n_pending >= ROWS_PER_FILE:
            self._flush()

    def _count_flags(self, table: pa.Table) -> None:
        """Per split: rows cropped by the fallback, rows without landmarks (and why)."""
        splits = table.column("split").to_pylist()
        fallback = table.column("face_fallback").to_pylist()
        landmarks_ok = table.column("landmarks_ok").to_pylist()
        errors = table.column("landmarks_error").to_pylist()
        for split, used_fallback, ok, error in zip(splits, fallback, landmarks_ok, errors):
            self.fallback_by_split[split] += bool(used_fallback)
            if not ok:
                self.no_landmarks_by_split[split] += 1
                self.no_landmarks_by_reason[reason_kind(error or "unknown")] += 1

    def add_rejects(self, rejects: list[Reject]) -> None:
        self.rejects.extend(rejects)

    def _flush(self) -> None:
        if not self.pending:
            return
        table = pa.concat_tables(self.pending).sort_by("sample_id")
        pq.write_table(table, self.tmp / DATA_DIR / f"part-{self.n_files:05d}.parquet")
        self.n_files += 1
        self.pending, self.n_pending = [], 0

    def manifest(self, base: dict) -> dict:
        by_reason = collections.Counter(reason_kind(r.reason) for r in self.rejects)
        present = labels.class_list(self.counts["label"])
        return {
            **base,
            "classes": present,
            "n_ok": self.n_ok,
            "n_rejected": len(self.rejects),
            "counts": {
                "label": {c: self.counts["label"][c] for c in present},
                "subject": dict(sorted(self.counts["subject"].items())),
                "split": dict(sorted(self.counts["split"].items())),
            },
            "rejects_by_reason": dict(sorted(by_reason.items())),
            "landmarks_clipped": {"images": self.n_clipped_images, "points": self.n_clipped_points},
            "face_fallback": {
                "method": FALLBACK_SOURCE,
                "rows": sum(self.fallback_by_split.values()),
                "by_split": {k: self.fallback_by_split[k] for k in sorted(self.counts["split"])},
            },
            "no_landmarks": {
                "rows": sum(self.no_landmarks_by_split.values()),
                "by_split": {k: self.no_landmarks_by_split[k] for k in sorted(self.counts["split"])},
                "by_reason": dict(sorted(self.no_landmarks_by_reason.items())),
            },
            "versions": package_versions(),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def publish(self, base_manifest: dict) -> dict:
        """Write rejects.csv, manifest.json and _SUCCESS, then rename into place."""
        self._flush()
        write_rejects_csv(self.tmp / REJECTS, self.rejects)
        manifest = self.manifest(base_manifest)
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        (self.tmp / SUCCESS_MARKER).write_text("")
        # another run that published the same content first wins: ours is dropped
        atomicio.publish_dir(self.tmp, self.final, lambda folder: (folder / SUCCESS_MARKER).is_file())
        return manifest

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
