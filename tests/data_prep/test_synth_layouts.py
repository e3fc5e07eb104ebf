"""Synthetic CK+ and SFEW layouts: deterministic, readable by their readers, true points preserved."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from partfer.data_prep.annotators import load_annotator
from partfer.cli.prep import main
from partfer.data_prep.detectors import load_detector
from partfer.data_prep.landmark_files import read_points
from partfer.data_prep.pipeline import PrepRequest, prepare_datasets
from partfer.data_prep.prep_store import read_rejects_csv
from partfer.data_prep.prepared import load_prepared
from partfer.data_prep.preprocess import prepare_record
from partfer.data_prep.readers import read_dataset
from partfer.data_prep.settings import PrepSettings
from partfer.data_prep.synth import synthesize

GROUND_TRUTH = PrepSettings(detector="none", annotator="dataset", crop_size=64)
SFEW_REGEX = r"^(Movie\d+)_"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ck_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ckplus"
    summary = synthesize("ckplus", root, subjects=4, per_class=1, seed=5, size=96, frames=5,
                         classes=("surprise", "happiness", "contempt"))
    return summary, read_dataset("ckplus", root)


@pytest.fixture(scope="module")
def sfew_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "sfew"
    summary = synthesize("sfew", root, subjects=3, per_class=2, seed=5, size=96)
    return summary, read_dataset("sfew", root, subject_regex=SFEW_REGEX)


@pytest.mark.parametrize("layout", ["ckplus", "sfew"])
def test_same_seed_same_bytes_other_seed_other_images(tmp_path, layout):
    kwargs = dict(subjects=2, per_class=1, size=48, classes=("anger", "happiness"))
    synthesize(layout, tmp_path / "a", seed=1, **kwargs)
    synthesize(layout, tmp_path / "b", seed=1, **kwargs)
    synthesize(layout, tmp_path / "c", seed=2, **kwargs)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    images = [k for k in a if k.endswith(".png")]
    assert images and all(a[k] != c.get(k) for k in images)


def test_ckplus_tree_is_the_official_layout_and_follows_the_protocol(ck_set):
    summary, read = ck_set
    # 4 subjects x 3 labelled sequences, plus one unlabelled sequence for every third subject.
    assert summary.subjects == ["S005", "S010", "S015", "S020"]
    assert summary.n_images == (4 * 3 + 2) * 5
    assert summary.classes == ["contempt", "happiness", "neutral", "surprise"]
    assert len(read.records) == 4 * 3 * 4
    assert Counter(r.label for r in read.records) == {"neutral": 12, "contempt": 12, "happiness": 12, "surprise": 12}
    assert [(r.source_path, r.reason) for r in read.rejects] == [
        ("cohn-kanade-images/S005/004", "no Emotion file: sequence not labelled (5 frames)"),
        ("cohn-kanade-images/S020/004", "no Emotion file: sequence not labelled (5 frames)")]
    assert all(r.landmarks_path for r in read.records)
    root = Path(summary.out_dir)
    emotion = next((root / "Emotion").rglob("*_emotion.txt"))
    assert emotion.name.endswith("_00000005_emotion.txt")                # named after the peak frame
    assert emotion.read_text() in {"   2.0000000e+00\n", "   5.0000000e+00\n", "   7.0000000e+00\n"}


def test_ckplus_expression_ramps_up_from_neutral_to_peak(ck_set):
    """In each surprise sequence the mouth opens wider frame by frame (distances ignore pose)."""
    summary, read = ck_set
    groups = sorted({r.group for r in read.records if r.label == "surprise"})
    assert len(groups) == 4
    root = Path(summary.out_dir)
    for group in groups:
        subject, sequence = group.split("/")
        files = sorted((root / "Landmarks" / subject / sequence).glob("*_landmarks.txt"))
        points = [read_points(f) for f in files]
        opening = [np.linalg.norm(p[66] - p[62]) / np.linalg.norm(p[45] - p[36]) for p in points]
        assert opening[0] < 0.05, (group, opening)                         # onset: lips closed
        assert all(later > earlier for earlier, later in zip(opening, opening[1:])), (group, opening)
        assert opening[-1] > 0.2, (group, opening)


def test_sfew_tree_has_disjoint_subjects_and_wild_colour_images(sfew_set):
    summary, read = sfew_set
    assert summary.subjects == ["Movie01", "Movie02", "Movie03"]
    assert summary.n_images == len(read.records) == 3 * 7 * 2 and read.rejects == []
    train = {r.subject for r in read.records if r.split == "train"}
    val = {r.subject for r in read.records if r.split == "val"}
    assert train == {"Movie01", "Movie02"} and val == {"Movie03"}
    assert Counter(r.label for r in read.records if r.split == "val") == {c: 2 for c in summary.classes}
    assert {Path(r.rel_path).parent.name for r in read.records} == {
        "Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"}
    sizes, rotations = [], []
    for record in read.records:
        image = cv2.imread(record.path, cv2.IMREAD_UNCHANGED)
        assert image.shape == (96, 96, 3)                                  # colour movie stills
        points = read_points(record.landmarks_path)
        assert np.all((points > 0) & (points < 95)), record.rel_path       # the whole face is in frame
        eye_axis = points[45] - points[36]
        sizes.append(np.linalg.norm(eye_axis))
        rotations.append(np.degrees(np.arctan2(eye_axis[1], eye_axis[0])))
    # "In the wild": head roll and face size vary far more than in the lab layouts (+-8 deg, +-8 %).
    assert np.ptp(rotations) > 16 and max(sizes) / min(sizes) > 1.15


def _expected_points(landmarks_path: str, image_size: int, crop_size: int) -> np.ndarray:
    """The true points in [0, 1] crop coordinates when the crop is the whole image (pixel centres
    at integers, as OpenCV's resize maps them)."""
    points = read_points(landmarks_path)
    return ((points + 0.5) * crop_size / image_size - 0.5) / crop_size


@pytest.mark.parametrize("which", ["ck_set", "sfew_set"])
def test_preprocessing_with_the_dataset_annotator_gives_the_true_points(request, which):
    _, read = request.getfixturevalue(which)
    detector = load_detector("none", GROUND_TRUTH)
    annotator = load_annotator("dataset", GROUND_TRUTH)
    for record in read.records[::5]:
        row = prepare_record(record, detector, annotator, GROUND_TRUTH, dataset=which)
        got = np.array(row["landmarks"], dtype=np.float64).reshape(68, 2)
        np.testing.assert_allclose(got, _expected_points(record.landmarks_path, 96, 64), atol=1e-5)
        assert row["label"] == record.label and row["subject"] == record.subject


def test_ckplus_points_sit_on_the_drawn_face_after_preprocessing(ck_set):
    """The prepared crop is dark at the irises the points give and lighter on the cheeks."""
    _, read = ck_set
    detector = load_detector("none", GROUND_TRUTH)
    annotator = load_annotator("dataset", GROUND_TRUTH)
    for record in read.records[::7]:
        row = prepare_record(record, detector, annotator, GROUND_TRUTH)
        crop = np.frombuffer(row["image"], np.uint8).reshape(64, 64).astype(float)
        points = np.array(row["landmarks"]).reshape(68, 2) * 64
        for eye in (points[36:42], points[42:48]):
            x, y = np.round(eye.mean(0)).astype(int)
            cx, cy = np.round(points[3] * 0.6 + points[33] * 0.4).astype(int)
            assert crop[y, x] < crop[cy, cx] - 30, record.rel_path


@pytest.mark.slow
def test_both_layouts_through_the_ray_pipeline(ck_set, sfew_set, tmp_path, shared_ray):
    requests = [PrepRequest("ckplus", "ckplus", ck_set[0].out_dir, GROUND_TRUTH),
                PrepRequest("sfew", "sfew", sfew_set[0].out_dir, GROUND_TRUTH, {"subject_regex": SFEW_REGEX})]
    infos = prepare_datasets(requests, tmp_path / "out", progress=False)

    ck = load_prepared(infos["ckplus"].path)
    assert (len(ck), infos["ckplus"].n_rejected) == (48, 2)
    rejects = read_rejects_csv(Path(infos["ckplus"].path) / "rejects.csv")
    assert [(r.source_path, r.reason) for r in rejects] == [(r.source_path, r.reason) for r in ck_set[1].rejects]
    assert ck.classes == ["contempt", "happiness", "neutral", "surprise"]
    sfew = load_prepared(infos["sfew"].path)
    assert (len(sfew), infos["sfew"].n_rejected) == (42, 0)
    assert set(sfew.splits) == {"train", "val"} and sfew.classes == sorted(sfew.classes)
    first = sfew.source_paths.index(sfew_set[1].records[0].rel_path)
    np.testing.assert_allclose(sfew.landmarks[first],
                               _expected_points(sfew_set[1].records[0].landmarks_path, 96, 64), atol=1e-5)


def test_cli_writes_both_layouts(tmp_path, capsys):
    assert main(["synth", "--layout", "ckplus", "--out", str(tmp_path / "ck"), "--subjects", "1",
                 "--per-class", "1", "--size", "40", "--classes", "anger", "--frames", "4"]) == 0
    assert "8 images (1 subjects, 2 classes: anger, neutral)" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "ck" / "cohn-kanade-images" / "S005").rglob("*.png"))[:1] == [
        "S005_001_00000001.png"]
    assert main(["synth", "--layout", "sfew", "--out", str(tmp_path / "sf"), "--subjects", "2",
                 "--per-class", "1", "--size", "40"]) == 0
    assert "14 images (2 subjects, 7 classes" in capsys.readouterr().out
    assert main(["synth", "--layout", "sfew", "--out", str(tmp_path / "x"), "--subjects", "1"]) == 2
    assert "sfew needs at least 2 subjects" in capsys.readouterr().err


@pytest.mark.parametrize("layout, kwargs, message", [
    ("ckplus", {"frames": 3}, "at least 4 frames per sequence"),
    ("ckplus", {"classes": ("neutral",)}, "at least one expression besides neutral"),
    ("ckplus", {"subjects": 200}, "at most 199 subjects"),
    ("sfew", {"subjects": 1}, "at least 2 subjects"),
])
def test_layout_limits_are_clear_errors(tmp_path, layout, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthesize(layout, tmp_path / "out", **{"size": 48, **kwargs})
    assert not (tmp_path / "out").exists()
