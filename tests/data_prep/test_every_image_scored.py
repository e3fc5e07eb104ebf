"""Every image that can be read is prepared: a detector miss gets the flagged centre-square crop,
a landmark failure keeps the row with landmarks_ok false (the paper scored every test image)."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from partfer.data_prep.pipeline import PrepRequest, PrepSettings, prepare_datasets
from partfer.data_prep.prepared import load_prepared
from partfer.data_prep.readers import read_dataset
from partfer.data_prep.schema import ADDED_COLUMNS, FALLBACK_SOURCE
from partfer.data_prep.synth import synthesize

# real SSD + dlib through the Ray pipeline, on many faces
pytestmark = pytest.mark.slow

GROUND_TRUTH = PrepSettings(detector="none", annotator="dataset")
GREY = "KA.NE9.99.tiff"          # a JAFFE name, a flat grey picture: no face in it


def _rejects(path: str) -> dict[str, str]:
    with open(Path(path) / "rejects.csv", newline="") as fh:
        return {row["source_path"]: row["reason"] for row in csv.DictReader(fh)}


def _manifest(path: str) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text())


@pytest.fixture(scope="module")
def faces_and_grey(tmp_path_factory, write_image) -> Path:
    """Two synthetic JAFFE faces and one flat grey image."""
    root = Path(synthesize("jaffe", tmp_path_factory.mktemp("grey") / "jaffe", subjects=1, per_class=1,
                           size=128, classes=("happiness", "surprise")).out_dir)
    write_image(root / GREY, size=200, value=128)
    return root


def test_a_faceless_image_is_kept_with_the_fallback_flag(faces_and_grey, tmp_path, shared_ray):
    info = prepare_datasets([PrepRequest("grey", "jaffe", str(faces_and_grey), PrepSettings())],
                            tmp_path / "out", progress=False)["grey"]
    assert (info.n_ok, info.n_rejected) == (3, 0)
    data = load_prepared(info.path)
    grey = data.sample_ids.index(GREY)
    assert data.face_fallback[grey] and data.face_fallback.sum() == 1
    assert not data.landmarks_ok[grey] and np.isnan(data.landmarks[grey]).all()
    table = pq.read_table(next((Path(info.path) / "data").glob("*.parquet"))).to_pylist()
    row = next(r for r in table if r["sample_id"] == GREY)
    assert (row["face_source"], row["detector"], row["detector_score"]) == (FALLBACK_SOURCE, "ssd", 0.0)
    assert row["face_box"] == [0.0, 0.0, 200.0, 200.0]     # the largest centred square of a square image
    manifest = _manifest(info.path)
    assert manifest["face_fallback"] == {"method": FALLBACK_SOURCE, "rows": 1, "by_split": {"all": 1}}
    assert manifest["settings"]["no_face"] == "center_square"
    assert manifest["no_landmarks"]["by_reason"] == {"no face in the no-face fallback crop": 1}


def test_no_face_reject_keeps_the_old_behaviour_in_another_folder(faces_and_grey, tmp_path, shared_ray):
    out = tmp_path / "out"
    requests = {mode: PrepRequest("grey", "jaffe", str(faces_and_grey), PrepSettings(no_face=mode))
                for mode in ("center_square", "reject")}
    kept = prepare_datasets([requests["center_square"]], out, progress=False)["grey"]
    rejected = prepare_datasets([requests["reject"]], out, progress=False)["grey"]
    assert rejected.path != kept.path                     # the setting is part of the content hash
    assert (rejected.n_ok, rejected.n_rejected) == (2, 1)
    assert _rejects(rejected.path) == {GREY: "no face found by ssd"}
    assert _manifest(rejected.path)["face_fallback"]["rows"] == 0


def test_failed_landmarks_keep_the_row_and_leave_only_the_landmark_targets(tmp_path, shared_ray):
    root = Path(synthesize("jaffe", tmp_path / "jaffe", subjects=1, per_class=1, size=96).out_dir)
    records = read_dataset("jaffe", root).records
    missing, far = records[0], records[1]
    Path(missing.landmarks_path).unlink()
    Path(far.landmarks_path).write_text("".join(f"{900 + i} {950 + i}\n" for i in range(68)))
    info = prepare_datasets([PrepRequest("lm", "jaffe", str(root), GROUND_TRUTH)], tmp_path / "out",
                            progress=False)["lm"]
    assert (info.n_ok, info.n_rejected) == (7, 0)
    data = load_prepared(info.path)
    failed = {data.sample_ids[i] for i in np.flatnonzero(~data.landmarks_ok)}
    assert failed == {missing.rel_path, far.rel_path}
    assert np.isnan(data.landmarks[~data.landmarks_ok]).all()
    assert np.isfinite(data.landmarks[data.landmarks_ok]).all()
    assert not data.face_fallback.any()
    assert _manifest(info.path)["no_landmarks"] == {
        "rows": 2, "by_split": {"all": 2},
        "by_reason": {"landmarks fall far outside the face crop": 1, "no ground-truth landmark file": 1}}


def test_synthetic_ckplus_gives_exactly_the_protocol_count_with_real_landmarks(tmp_path, shared_ray):
    """First frame + last 3 of every labelled sequence, all with landmarks: the SSD's echo box
    (a shifted duplicate of a large face) used to crop the wrong place on a third of these."""
    root = synthesize("ckplus", tmp_path / "ckplus", subjects=2, per_class=1, seed=3).out_dir
    read = read_dataset("ckplus", root)
    labelled = {r.group for r in read.records}
    info = prepare_datasets([PrepRequest("ck", "ckplus", root, PrepSettings(annotator="dataset"))],
                            tmp_path / "out", progress=False)["ck"]
    assert len(labelled) == 2 * 7 and info.n_ok == 4 * len(labelled)
    assert info.n_rejected == len(read.rejects)           # only the unlabelled sequence
    data = load_prepared(info.path)
    assert data.landmarks_ok.all() and not data.face_fallback.any()
    assert Counter(data.labels)["neutral"] == len(labelled)
    nose_tip = data.landmarks[:, 30]
    assert ((nose_tip > 0.3) & (nose_tip < 0.7)).all()    # each crop is centred on its face


def test_folders_prepared_before_the_flags_still_load(tmp_path, shared_ray):
    root = Path(synthesize("jaffe", tmp_path / "jaffe", subjects=1, per_class=1, size=64).out_dir)
    info = prepare_datasets([PrepRequest("old", "jaffe", str(root), GROUND_TRUTH)], tmp_path / "out",
                            progress=False)["old"]
    part = next((Path(info.path) / "data").glob("*.parquet"))
    table = pq.read_table(part)
    pq.write_table(table.drop_columns([*ADDED_COLUMNS, "face_source"]), part)
    data = load_prepared(info.path)
    assert data.landmarks_ok.all() and not data.face_fallback.any() and len(data) == 7
