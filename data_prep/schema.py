"""The prepared-data contract between data_prep and everything downstream.

A prepared data set is a directory `<out>/prepared/<dataset>-<hash12>/` holding
  data/*.parquet   one row per accepted image (columns below)
  manifest.json    counts per class / subject / split, settings, versions, classes
  rejects.csv      every input not used: source_path, reason
  _SUCCESS         written last: a directory without it is unfinished and ignored
"""
from __future__ import annotations

import pyarrow as pa

CROP_SIZE = 160

COLUMNS = {
    "sample_id": pa.string(),      # unique within the data set, stable across runs
    "source_path": pa.string(),    # the raw file (relative to the data set root)
    "dataset": pa.string(),        # e.g. "jaffe"
    "split": pa.string(),          # "train" / "val" / "test" / "all" (for cross-validated sets)
    "subject": pa.string(),        # person id, for subject-independent folds
    "group": pa.string(),          # sequence / session id (all frames of a group share a fold)
    "label": pa.string(),          # canonical expression name (data_prep.labels)
    "image": pa.binary(),          # uint8 grayscale crop, row-major, height*width bytes
    "height": pa.int32(),
    "width": pa.int32(),
    "landmarks": pa.list_(pa.float32(), 136),  # x0,y0,...,x67,y67 in [0,1] crop coordinates
    "face_box": pa.list_(pa.float32(), 4),     # x0,y0,x1,y1 in source pixels
    "detector": pa.string(),
    "detector_score": pa.float32(),
    "annotator": pa.string(),
}

SCHEMA = pa.schema([pa.field(k, v) for k, v in COLUMNS.items()])
SUCCESS_MARKER = "_SUCCESS"
