"""data_prep/readers/ckplus.py on a synthetic official CK+ tree and on hand-made broken ones."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from partfer.data_prep.errors import DatasetRootError
from partfer.data_prep.landmark_files import read_points
from partfer.data_prep.readers import Reject, read_dataset
from partfer.data_prep.synth import synthesize

CLASSES = ("contempt", "happiness", "surprise")
FRAMES = 6


@pytest.fixture(scope="module")
def ck_tree(tmp_path_factory) -> Path:
    """3 subjects x 3 expressions x 1 sequence of 6 frames, plus S005's unlabelled sequence."""
    root = tmp_path_factory.mktemp("ckplus") / "CK+"
    synthesize("ckplus", root, subjects=3, per_class=1, seed=2, size=48, classes=CLASSES, frames=FRAMES)
    return root


def _emotion_label(root: Path, subject: str, sequence: str) -> float:
    (emotion,) = (root / "Emotion" / subject / sequence).glob("*_emotion.txt")
    return float(emotion.read_text())


def test_labelled_sequences_give_first_frame_neutral_and_last_three_labelled(ck_tree):
    result = read_dataset("ckplus", ck_tree)

    assert len(result.records) == 9 * 4                       # 4 images per labelled sequence
    assert Counter(r.label for r in result.records) == {"neutral": 9, "contempt": 9, "happiness": 9, "surprise": 9}
    by_group: dict[str, list] = {}
    for record in result.records:
        by_group.setdefault(record.group, []).append(record)
    assert len(by_group) == 9
    codes = {2.0: "contempt", 5.0: "happiness", 7.0: "surprise"}   # CK+'s Emotion file codes
    for group, records in by_group.items():
        subject, sequence = group.split("/")
        frames = sorted(int(Path(r.rel_path).stem.split("_")[2]) for r in records)
        assert frames == [1, FRAMES - 2, FRAMES - 1, FRAMES], group
        for record in records:
            frame = int(Path(record.rel_path).stem.split("_")[2])
            expected = "neutral" if frame == 1 else codes[_emotion_label(ck_tree, subject, sequence)]
            assert record.label == expected, record.rel_path
            assert (record.subject, record.split) == (subject, "all")
            assert record.rel_path == f"cohn-kanade-images/{subject}/{sequence}/{subject}_{sequence}_{frame:08d}.png"
    assert {r.subject for r in result.records} == {"S005", "S010", "S015"}


def test_unlabelled_sequence_is_a_reject_and_not_counted(ck_tree):
    result = read_dataset("ckplus", ck_tree)
    assert list((ck_tree / "cohn-kanade-images" / "S005" / "004").glob("*.png"))      # it exists ...
    assert not list((ck_tree / "Emotion" / "S005" / "004").iterdir())                 # ... unlabelled
    assert [(r.source_path, r.reason) for r in result.rejects] == [
        ("cohn-kanade-images/S005/004", f"no Emotion file: sequence not labelled ({FRAMES} frames)")]
    assert not any(r.group == "S005/004" for r in result.records)
    assert any("1 sequence has no Emotion file" in note for note in result.notes)
    assert any(note.startswith(f"{9 * (FRAMES - 4)} frames between the first and the last 3") for note in result.notes)


def test_every_record_has_its_frame_landmarks(ck_tree):
    for record in read_dataset("ckplus", ck_tree).records:
        image = Path(record.path)
        assert record.landmarks_path == str(ck_tree / "Landmarks" / image.parent.parent.name / image.parent.name
                                            / f"{image.stem}_landmarks.txt")
        points = read_points(record.landmarks_path)
        assert np.all((points >= 0) & (points <= 47)), record.rel_path


@pytest.mark.parametrize("content, reason", [
    ("happy\n", "malformed Emotion file ('happy' is not a number)"),
    ("   2.5000000e+00\n", "malformed Emotion file (2.5000000e+00 is not a whole number)"),
    ("   1.0 2.0\n", "malformed Emotion file (expected one number, found 2 values)"),
    ("", "malformed Emotion file (expected one number, found 0 values)"),
    ("   9.0000000e+00\n", "emotion code 9 out of range 0-7"),
    ("  -1\n", "emotion code -1 out of range 0-7"),
])
def test_unusable_emotion_file_rejects_its_sequence(tmp_path, write_image, content, reason):
    _sequence(tmp_path, write_image, "S010", "002", 5, emotion="   5.0000000e+00\n")
    _sequence(tmp_path, write_image, "S011", "001", 5, emotion=content)

    result = read_dataset("ckplus", tmp_path)

    assert {r.group for r in result.records} == {"S010/002"}
    assert result.rejects == [
        Reject("cohn-kanade-images/S011/001", f"{reason}: Emotion/S011/001/S011_001_00000005_emotion.txt")]


def test_stray_files_short_sequences_and_orphans_are_rejects(tmp_path, write_image):
    _sequence(tmp_path, write_image, "S010", "001", 5, emotion="   1.0000000e+00\n")
    _sequence(tmp_path, write_image, "S010", "002", 3, emotion="   3.0000000e+00\n")     # too short
    _sequence(tmp_path, write_image, "S012", "001", 4, emotion=["   4.0\n", "   6.0\n"])  # two labels
    seq = tmp_path / "cohn-kanade-images" / "S010" / "001"
    (seq / ".DS_Store").write_bytes(b"\0\1")
    write_image(seq / "S010_001_frame6.png")
    write_image(seq / "S099_001_00000007.png")                    # another sequence's name
    write_image(tmp_path / "cohn-kanade-images" / "S010" / "loose.png")
    (tmp_path / "Emotion" / "S050" / "001").mkdir(parents=True)
    (tmp_path / "Emotion" / "S050" / "001" / "S050_001_00000009_emotion.txt").write_text("   1.0\n")
    (tmp_path / "Emotion" / "S010" / "001" / "notes.txt").write_text("x")
    (tmp_path / "FACS").mkdir()
    (tmp_path / "FACS" / "S010_001_00000005_facs.txt").write_text("12 3\n")

    result = read_dataset("ckplus", tmp_path)

    assert [(r.rel_path, r.label) for r in result.records] == [
        ("cohn-kanade-images/S010/001/S010_001_00000001.png", "neutral"),
        ("cohn-kanade-images/S010/001/S010_001_00000003.png", "anger"),
        ("cohn-kanade-images/S010/001/S010_001_00000004.png", "anger"),
        ("cohn-kanade-images/S010/001/S010_001_00000005.png", "anger"),
    ]
    reasons = {r.source_path: r.reason for r in result.rejects}
    assert reasons == {
        "FACS": "not part of the CK+ layout (only cohn-kanade-images/, Emotion/ and Landmarks/ are read)",
        "cohn-kanade-images/S010/001/.DS_Store": "not an image file",
        "cohn-kanade-images/S010/001/S010_001_frame6.png":
            "file name does not follow SXXX_NNN_FFFFFFFF (e.g. S005_001_00000001.png)",
        "cohn-kanade-images/S010/001/S099_001_00000007.png": "file name does not match its folder S010/001",
        "cohn-kanade-images/S010/loose.png": "not inside a subject/sequence folder",
        "cohn-kanade-images/S010/002": "labelled sequence has 3 usable frames; the protocol needs at least 4 "
                                       "(first + last 3)",
        "cohn-kanade-images/S012/001": "more than one Emotion file: S012_001_00000003_emotion.txt, "
                                       "S012_001_00000004_emotion.txt",
        "Emotion/S010/001/notes.txt": "not an Emotion file (Emotion/SXXX/NNN/SXXX_NNN_FFFFFFFF_emotion.txt)",
        "Emotion/S050/001/S050_001_00000009_emotion.txt": "Emotion file without an image sequence",
    }
    assert all(r.landmarks_path is None for r in result.records)
    assert any("no Landmarks/ folder" in note for note in result.notes)


def test_folder_names_are_case_insensitive_and_missing_parts_are_whole_run_errors(tmp_path, write_image):
    _sequence(tmp_path, write_image, "S020", "001", 4, emotion="   7.0\n")
    (tmp_path / "Emotion").rename(tmp_path / "emotion")
    assert [r.label for r in read_dataset("ckplus", tmp_path).records] == ["neutral"] + ["surprise"] * 3

    (tmp_path / "emotion").rename(tmp_path / "labels")
    with pytest.raises(DatasetRootError, match="no Emotion/ folder in .*labels \\(Emotion_labels.zip\\)"):
        read_dataset("ckplus", tmp_path)
    (tmp_path / "cohn-kanade-images").rename(tmp_path / "frames")
    with pytest.raises(DatasetRootError, match="no cohn-kanade-images/ folder"):
        read_dataset("ckplus", tmp_path)


def _sequence(root: Path, write_image, subject: str, sequence: str, n_frames: int, emotion) -> None:
    """A CK+ sequence of n_frames images; emotion: one Emotion file's content, or a list of
    contents (files named after the last frames, as a second label would be)."""
    for frame in range(1, n_frames + 1):
        write_image(root / "cohn-kanade-images" / subject / sequence / f"{subject}_{sequence}_{frame:08d}.png")
    contents = emotion if isinstance(emotion, list) else [emotion]
    folder = root / "Emotion" / subject / sequence
    folder.mkdir(parents=True, exist_ok=True)
    for back, content in enumerate(contents):
        (folder / f"{subject}_{sequence}_{n_frames - back:08d}_emotion.txt").write_text(content)
