from __future__ import annotations

import numpy as np
import pytest

from partfer.data_prep import labels
from partfer.data_prep.face_geometry import (
    Identity, expression_points, neutral_points, pose_points, Pose,
)
from partfer.data_prep.ibug68 import FLIP_PERMUTATION, PARTS
from partfer.data_prep.image_io import load_grayscale
from partfer.data_prep.landmark_files import read_points
from partfer.data_prep.readers import read_dataset
from partfer.data_prep.synth import draw_face, generate, subject_codes, synthesize


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    kwargs = dict(subjects=2, per_class=1, size=64)
    synthesize("jaffe", tmp_path / "a", seed=3, **kwargs)
    synthesize("jaffe", tmp_path / "b", seed=3, **kwargs)
    synthesize("jaffe", tmp_path / "c", seed=4, **kwargs)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.endswith(".tiff"))


def test_counts_names_and_landmarks_follow_the_jaffe_layout(tmp_path):
    summary = synthesize("jaffe", tmp_path / "set", subjects=3, per_class=2, size=96)
    assert summary.n_images == 3 * 7 * 2
    assert summary.subjects == ["KA", "KL", "KM"]
    assert summary.classes == ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]

    read = read_dataset("jaffe", summary.out_dir)      # our own reader accepts every file
    assert read.rejects == [] and len(read.records) == summary.n_images
    assert {r.rel_path for r in read.records if r.subject == "KA" and r.label == "anger"} == {
        "KA.AN1.1.tiff", "KA.AN2.2.tiff"}
    ids = sorted(int(r.rel_path.split(".")[2]) for r in read.records)
    assert ids == list(range(1, summary.n_images + 1))
    for record in read.records:
        image = load_grayscale(record.path)
        assert image.shape == (96, 96) and image.dtype == np.uint8
        points = read_points(record.landmarks_path)
        assert np.all(points >= 0) and np.all(points <= 95), record.rel_path


def test_more_than_ten_subjects_get_new_two_letter_codes():
    codes = subject_codes(14)
    assert codes[:10] == ["KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"]
    assert len(set(codes)) == 14 and all(len(c) == 2 and c.isalpha() for c in codes)


def test_refuses_a_non_empty_folder_and_unknown_layouts(tmp_path):
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        synthesize("jaffe", tmp_path, subjects=1, per_class=1, size=64)
    with pytest.raises(ValueError, match="known: ckplus, jaffe, sfew"):
        synthesize("cohn-kanade", tmp_path / "new", subjects=1, per_class=1, size=64)


def test_template_follows_ibug_order_orientation_and_mirror_symmetry():
    p = neutral_points(Identity())
    # Point 0 is the subject's right jaw end, on the image left; 36-41 is the image-left eye.
    assert p[0, 0] < p[8, 0] < p[16, 0]
    assert p[36:42, 0].mean() < 0 < p[42:48, 0].mean()
    assert p[36, 0] < p[39, 0] < p[42, 0] < p[45, 0]               # outer, inner, inner, outer corners
    assert p[48, 0] < p[51, 0] < p[54, 0]
    # Top to bottom: brows, eyes, nose tip, mouth, chin.
    def y(part):
        return p[slice(*PARTS[part]), 1].mean()
    assert y("eyebrows") < y("eyes") < p[30, 1] < y("mouth") < p[8, 1]
    # A neutral face mirrored and re-indexed with the shared flip permutation is itself.
    np.testing.assert_allclose(p[FLIP_PERMUTATION] * [-1, 1], p, atol=1e-12)


def _features(points: np.ndarray) -> dict[str, float]:
    """Expression measurements in units of the inter-ocular distance (pose-free)."""
    left_eye, right_eye = points[36:42].mean(0), points[42:48].mean(0)
    axis = right_eye - left_eye
    iod = np.linalg.norm(axis)
    down = np.array([-axis[1], axis[0]]) / iod                    # perpendicular, towards the chin

    def height(idx):                                              # distance below the eye line
        return float(np.mean((points[idx] - (left_eye + right_eye) / 2) @ down) / iod)

    return {
        "mouth_open": float(np.linalg.norm(points[66] - points[62]) / iod),
        "brow": height(list(range(17, 27))) - height(list(range(36, 48))),   # negative: above eyes
        "inner_brow": height([21, 22]) - height(list(range(36, 48))),
        "brow_gap": float(np.linalg.norm(points[22] - points[21]) / iod),
        "corners": height([48, 54]) - height([51, 57]),                     # negative: corners up
        "mouth_width": float(np.linalg.norm(points[54] - points[48]) / iod),
        "chin": height([8]),
        "eye_open": float(np.mean([np.linalg.norm(points[41] - points[37]), np.linalg.norm(points[46] - points[44])]) / iod),
        "upper_lip": height([50, 51, 52]),
        "asymmetry": height([54]) - height([48]),                         # negative: right corner higher
    }


@pytest.fixture(scope="module")
def synthetic_features():
    items = list(generate(subjects=6, per_class=2, seed=11, size=128, classes=labels.CANONICAL))
    table: dict[str, list[dict]] = {}
    for item in items:
        table.setdefault(item.label, []).append(_features(item.points))
    return {label: {k: float(np.mean([f[k] for f in rows])) for k in rows[0]} for label, rows in table.items()}, items


def test_expressions_move_the_points_real_expressions_move(synthetic_features):
    f, _ = synthetic_features
    neutral = f["neutral"]
    assert f["surprise"]["mouth_open"] > neutral["mouth_open"] + 0.2
    assert f["surprise"]["brow"] < neutral["brow"] - 0.15               # brows raised high
    assert f["surprise"]["eye_open"] > neutral["eye_open"]
    assert f["surprise"]["chin"] > neutral["chin"] + 0.2                # jaw dropped
    assert f["happiness"]["corners"] < neutral["corners"] - 0.1         # corners up
    assert f["happiness"]["mouth_width"] > neutral["mouth_width"]
    assert f["sadness"]["corners"] > neutral["corners"] + 0.1           # corners down
    assert f["sadness"]["inner_brow"] < neutral["inner_brow"] - 0.1     # inner brows raised
    assert f["anger"]["brow"] > neutral["brow"] + 0.1                   # brows lowered ...
    assert f["anger"]["brow_gap"] < neutral["brow_gap"] - 0.1           # ... and pulled together
    assert f["anger"]["mouth_open"] <= neutral["mouth_open"] + 1e-6     # lips pressed
    assert f["disgust"]["upper_lip"] < neutral["upper_lip"] - 0.05      # upper lip raised
    assert f["fear"]["brow"] < neutral["brow"] and f["fear"]["brow_gap"] < neutral["brow_gap"]
    assert f["fear"]["mouth_width"] > neutral["mouth_width"] + 0.15     # stretched
    assert f["contempt"]["asymmetry"] < neutral["asymmetry"] - 0.1      # one corner up
    assert abs(neutral["asymmetry"]) < 0.02


def test_classes_are_separable_across_subjects(synthetic_features):
    """Leave-one-subject-out nearest class mean on pose-normalised landmarks: learnable classes."""
    _, items = synthetic_features

    def normalised(points):
        left, right = points[36:42].mean(0), points[42:48].mean(0)
        axis = right - left
        angle = -np.arctan2(axis[1], axis[0])
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return (((points - points.mean(0)) @ rot.T) / np.linalg.norm(axis)).ravel()

    x = np.array([normalised(i.points) for i in items])
    y = np.array([i.label for i in items])
    subjects = np.array([i.subject for i in items])
    correct = 0
    for subject in np.unique(subjects):
        train = subjects != subject
        classes = np.unique(y[train])
        means = np.array([x[train & (y == c)].mean(0) for c in classes])
        predicted = classes[np.argmin(((x[~train, None] - means[None]) ** 2).sum(-1), axis=1)]
        correct += int((predicted == y[~train]).sum())
    accuracy = correct / len(items)
    assert accuracy >= 0.85, accuracy


def test_draw_face_works_on_its_own_and_follows_the_points():
    size = 128
    neutral = pose_points(neutral_points(Identity()), Pose(), size)
    surprised = pose_points(expression_points(neutral_points(Identity()), "surprise", 1.0), Pose(), size)
    closed = draw_face(neutral, size)
    opened = draw_face(surprised, size)
    assert closed.shape == (size, size) and closed.dtype == np.uint8
    inside = np.round((surprised[62] + surprised[66]) / 2).astype(int)
    # The open mouth is dark where the closed mouth was lip or skin.
    assert opened[inside[1], inside[0]] < 60 < closed[inside[1], inside[0]]
    # Eyes are drawn at their points: the iris is darker than the skin beside the face.
    eye = np.round(neutral[36:42].mean(0)).astype(int)
    cheek = np.round(neutral[3] * 0.6 + neutral[33] * 0.4).astype(int)
    assert closed[eye[1], eye[0]] < closed[cheek[1], cheek[0]] - 60
    with pytest.raises(ValueError, match="68"):
        draw_face(neutral[:60], size)
