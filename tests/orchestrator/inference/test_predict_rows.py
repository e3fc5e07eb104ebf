"""The rows of `partfer predict`: a note true of every row is said once on stderr, not in each
row; faces below --min-score get a row saying why; boxes are integers x, y, w, h (nullable integers
in Parquet); --details adds the 68 landmarks. Real model directories (conftest), the real SSD and
dlib on scikit-image's astronaut."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from partfer.cli import main
from partfer.orchestrator.inference.landmarks import landmark_columns
from partfer.orchestrator.inference.predict import LOW_SCORE, OK, WHOLE_FRAME_NOTE, Predictor

BOX = ["x", "y", "w", "h"]
NOSE_TIP = 30                            # iBUG 68 index of the tip of the nose
INTEGER_COLUMNS = ["frame", "face", *BOX]


def _predict(model: Path, *argv: str) -> int:
    return main(["predict", "--model", str(model), "--device", "cpu", "--no-progress", *argv])


@pytest.fixture(scope="module")
def astronaut_face(ssd_model) -> dict:
    from skimage import data

    return Predictor.from_dir(ssd_model, device="cpu").predict_image(data.astronaut())[0]


def test_the_whole_image_note_is_one_stderr_line_not_in_every_row(untrained_model, tmp_path, capsys):
    photos = []
    for k in range(3):
        photos.append(tmp_path / f"{k}.png")
        cv2.imwrite(str(photos[-1]), np.random.default_rng(k).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    out = tmp_path / "p.csv"
    assert _predict(untrained_model, *map(str, photos), "--out", str(out)) == 0
    err = capsys.readouterr().err
    assert err.count(WHOLE_FRAME_NOTE) == 1 and f"partfer predict: note: {WHOLE_FRAME_NOTE}\n" in err
    rows = pd.read_csv(out)
    assert len(rows) == 3 and (rows["status"] == OK).all() and rows["message"].isna().all()


def test_a_face_below_min_score_gets_a_row_saying_why(ssd_model, astronaut_face):
    from skimage import data

    threshold = astronaut_face["score"] + 1e-6
    strict = Predictor.from_dir(ssd_model, device="cpu", min_score=threshold).predict_image(data.astronaut())
    assert strict[0]["status"] == LOW_SCORE and strict[0]["label"] is None and strict[0]["probabilities"] is None
    assert strict[0]["box"] == astronaut_face["box"]                         # found, kept, not classified
    assert f"below --min-score {threshold:g}" in strict[0]["message"]


def test_min_score_on_the_command_line_counts_the_faces_it_left_out(ssd_model, astronaut_png, tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert _predict(ssd_model, str(astronaut_png), "--min-score", "1.5", "--out", str(out)) == 0
    rows = pd.read_csv(out)
    assert len(rows) >= 1 and (rows["status"] == LOW_SCORE).all() and rows["label"].isna().all()
    assert rows["message"].str.contains("below --min-score 1.5").all() and rows["x"].notna().all()
    assert f"{len(rows)} faces below --min-score" in capsys.readouterr().err


def test_boxes_are_integers_and_parquet_keeps_integer_columns_nullable(ssd_model, astronaut_png, tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((64, 64, 3), 128, np.uint8))          # no face: a row without a box
    csv, parquet = tmp_path / "p.csv", tmp_path / "p.parquet"
    for out in (csv, parquet):
        assert _predict(ssd_model, str(astronaut_png), str(blank), "--out", str(out)) == 0
    table = pq.read_table(parquet)
    assert all(table.schema.field(c).type == pa.int64() for c in INTEGER_COLUMNS)
    rows = pd.read_parquet(parquet)
    assert all(str(rows[c].dtype) == "Int64" for c in INTEGER_COLUMNS), rows.dtypes
    face = rows[rows["status"] == OK].iloc[0]
    assert face["x"] < 200 < face["x"] + face["w"] and face["y"] < 100 < face["y"] + face["h"]   # around the face
    assert rows.loc[rows["input"] == str(blank), BOX].isna().all(axis=None)
    text = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert all(text.loc[0, c].lstrip("-").isdigit() for c in BOX)        # written as 180, not 180.0
    assert "x0" not in text.columns


def test_details_add_the_68_landmarks_in_image_pixels(ssd_model, astronaut_png, astronaut_face, tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert _predict(ssd_model, str(astronaut_png), "--details", "--out", str(out)) == 0
    rows = pd.read_csv(out)
    assert landmark_columns()[:2] == ["lm00_x", "lm00_y"] and len(landmark_columns()) == 136
    points = rows.loc[0, landmark_columns()].to_numpy(float).reshape(68, 2)
    x, y, w, h = astronaut_face["box"]
    nose = points[NOSE_TIP]
    assert x < nose[0] < x + w and y < nose[1] < y + h                       # inside the face's box
    np.testing.assert_allclose(points, astronaut_face["landmarks"], atol=1e-3)
    short = tmp_path / "short.csv"
    assert _predict(ssd_model, str(astronaut_png), "--out", str(short)) == 0
    assert "lm00_x" not in pd.read_csv(short).columns
