"""The prepared-data contract between data_prep and everything downstream.

A prepared data set is a directory `<out>/prepared/<dataset>-<hash12>/` holding
  data/*.parquet   one row per accepted image (columns below)
  manifest.json    counts per class / subject / split, settings, versions, classes
  rejects.csv      every input not used: source_path, reason, source_path_hex (an image whose
                   face the detector misses is kept with a fallback crop, and one whose landmarks
                   fail is kept with landmarks_ok false: neither is a reject)
Names are written as data_prep.file_names says: UTF-8 text (undecodable bytes as \\xNN) and, for
a name that is not valid UTF-8, its bytes in hex, so the exact file name is recoverable.
  _SUCCESS         written last: a directory without it is unfinished and ignored
"""
from __future__ import annotations

import pyarrow as pa

from partfer.data_prep.settings import CROP_SIZE  # noqa: F401  (the prepared images' side, re-exported)

COLUMNS = {
    "sample_id": pa.string(),      # unique within the data set, stable across runs
    "source_path": pa.string(),    # the raw file (relative to the data set root), as UTF-8 text
    "source_path_hex": pa.string(),  # its name's bytes in hex when not valid UTF-8, else null
    "dataset": pa.string(),        # e.g. "jaffe"
    "split": pa.string(),          # "train" / "val" / "test" / "all" (for cross-validated sets)
    "subject": pa.string(),        # person id, for subject-independent folds
    "group": pa.string(),          # sequence / session id (all frames of a group share a fold)
    "label": pa.string(),          # canonical expression name (data_prep.labels)
    "image": pa.binary(),          # uint8 grayscale crop, row-major, height*width bytes
    "height": pa.int32(),
    "width": pa.int32(),
    "landmarks": pa.list_(pa.float32(), 136),  # x0,y0,...,x67,y67 in [0,1] crop coordinates; all NaN
                                               # when landmarks_ok is false
    "landmarks_ok": pa.bool_(),    # false: the annotator failed; the row is a classification sample
                                   # only, never a landmark target
    "landmarks_error": pa.string(),  # why landmarks_ok is false (null when true)
    "face_box": pa.list_(pa.float32(), 4),     # x0,y0,x1,y1 in source pixels
    "face_fallback": pa.bool_(),   # true: the detector found no face; the crop is FALLBACK_SOURCE
    "face_source": pa.string(),    # the detector's name, or FALLBACK_SOURCE
    "detector": pa.string(),       # the detector that was run (also on fallback rows)
    "detector_score": pa.float32(),  # 0.0 on fallback rows
    "annotator": pa.string(),
}

# The face_source of a row whose detector found no face: the largest centred square of the image.
FALLBACK_SOURCE = "fallback:center-square"
# Columns a prepared folder written before they existed lacks; the loader fills them with these
# values, which are what such folders held (they dropped every no-face and no-landmark image).
# face_source is filled from the detector column.
ADDED_COLUMNS = {"landmarks_ok": True, "landmarks_error": None, "face_fallback": False,
                 "source_path_hex": None}

SCHEMA = pa.schema([pa.field(k, v) for k, v in COLUMNS.items()])
SUCCESS_MARKER = "_SUCCESS"
