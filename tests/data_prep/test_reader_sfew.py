"""data_prep/readers/sfew.py: Train/Val class folders, the unlabelled Test folder, subjects, landmarks."""
from __future__ import annotations

import pytest

from partfer.data_prep.errors import DatasetRootError
from partfer.data_prep.readers import Reject, read_dataset
from partfer.data_prep.readers.sfew import NO_REGEX_NOTE


def _sfew_like(root, write_image):
    write_image(root / "Train" / "Angry" / "Airheads_000519240_00000005.png")
    write_image(root / "Train" / "happy" / "Airheads_000612000_00000011.png")       # any case
    write_image(root / "Train" / "Neutral" / "Bridesmaids_001200450_00000020.jpg")
    write_image(root / "Val" / "Sad" / "Cinderella_000100200_00000002.png")
    write_image(root / "Val" / "SURPRISE" / "Cinderella_000100900_00000015.png")
    (root / "landmarks" / "Train" / "Angry").mkdir(parents=True)
    (root / "landmarks" / "Train" / "Angry" / "Airheads_000519240_00000005.txt").write_text("5 6\n" * 68)


def test_split_folders_give_splits_and_class_folders_labels(tmp_path, write_image):
    _sfew_like(tmp_path, write_image)

    result = read_dataset("sfew", tmp_path)

    assert result.rejects == []
    got = [(r.rel_path, r.split, r.label, r.subject, r.group) for r in result.records]
    assert got == [
        ("Train/Angry/Airheads_000519240_00000005.png", "train", "anger",
         "Airheads_000519240_00000005", "Airheads_000519240_00000005"),
        ("Train/Neutral/Bridesmaids_001200450_00000020.jpg", "train", "neutral",
         "Bridesmaids_001200450_00000020", "Bridesmaids_001200450_00000020"),
        ("Train/happy/Airheads_000612000_00000011.png", "train", "happiness",
         "Airheads_000612000_00000011", "Airheads_000612000_00000011"),
        ("Val/SURPRISE/Cinderella_000100900_00000015.png", "val", "surprise",
         "Cinderella_000100900_00000015", "Cinderella_000100900_00000015"),
        ("Val/Sad/Cinderella_000100200_00000002.png", "val", "sadness",
         "Cinderella_000100200_00000002", "Cinderella_000100200_00000002"),
    ]
    assert result.notes == [NO_REGEX_NOTE]                 # no subject ids: said, not hidden
    by_path = {r.rel_path: r for r in result.records}
    assert by_path["Train/Angry/Airheads_000519240_00000005.png"].landmarks_path == str(
        tmp_path.resolve() / "landmarks" / "Train" / "Angry" / "Airheads_000519240_00000005.txt")
    assert by_path["Val/Sad/Cinderella_000100200_00000002.png"].landmarks_path is None


def test_subject_regex_groups_images_by_movie(tmp_path, write_image):
    _sfew_like(tmp_path, write_image)
    write_image(tmp_path / "Val" / "Sad" / "untitled.png")

    result = read_dataset("sfew", tmp_path, subject_regex=r"^(?P<subject>[A-Za-z]+)_\d+_")

    assert [(r.split, r.subject) for r in result.records] == [
        ("train", "Airheads"), ("train", "Bridesmaids"), ("train", "Airheads"),
        ("val", "Cinderella"), ("val", "Cinderella")]
    assert result.notes == []
    assert result.rejects == [Reject("Val/Sad/untitled.png",
                                     "file name does not match subject_regex '^(?P<subject>[A-Za-z]+)_\\\\d+_'")]


def test_test_images_unknown_classes_and_stray_files_are_rejects(tmp_path, write_image):
    _sfew_like(tmp_path, write_image)
    write_image(tmp_path / "Test" / "Movie_000000001_00000001.png")
    write_image(tmp_path / "Test" / "Movie_000000002_00000001.png")
    write_image(tmp_path / "Train" / "Smirk" / "Airheads_000000100_00000001.png")
    write_image(tmp_path / "Train" / "Airheads_000000200_00000001.png")
    (tmp_path / "Train" / "Angry" / "Thumbs.db").write_bytes(b"\0")
    (tmp_path / "README.txt").write_text("SFEW 2.0")
    write_image(tmp_path / "Train_Aligned_Faces" / "Angry" / "x.png")

    result = read_dataset("sfew", tmp_path)

    assert len(result.records) == 5
    assert {(r.source_path, r.reason) for r in result.rejects} == {
        ("README.txt", "not part of the SFEW layout (only Train/, Val/ and Test/ are read, and landmarks/)"),
        ("Train_Aligned_Faces", "not part of the SFEW layout (only Train/, Val/ and Test/ are read, and landmarks/)"),
        ("Test/Movie_000000001_00000001.png", "unlabelled test image (SFEW's test labels are not public)"),
        ("Test/Movie_000000002_00000001.png", "unlabelled test image (SFEW's test labels are not public)"),
        ("Train/Smirk/Airheads_000000100_00000001.png", "unknown class folder 'Smirk'"),
        ("Train/Airheads_000000200_00000001.png", "image outside any class folder"),
        ("Train/Angry/Thumbs.db", "not an image file"),
    }


def test_a_labelled_test_folder_is_the_test_split(tmp_path, write_image):
    write_image(tmp_path / "Val" / "Fear" / "a.png")
    write_image(tmp_path / "Test" / "Fear" / "b.png")
    assert [(r.split, r.label) for r in read_dataset("sfew", tmp_path).records] == [
        ("test", "fear"), ("val", "fear")]


def test_a_root_without_train_or_val_is_a_whole_run_error(tmp_path, write_image):
    write_image(tmp_path / "Test" / "a.png")
    write_image(tmp_path / "Angry" / "b.png")
    with pytest.raises(DatasetRootError, match="no Train/ or Val/ folder in .*Train/<Class>/\\*.png"):
        read_dataset("sfew", tmp_path)
