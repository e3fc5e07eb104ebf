from __future__ import annotations

import pytest

from partfer.data_prep.errors import DatasetRootError, UnknownNameError
from partfer.data_prep.readers import Record, Reject, get_reader, known_layouts, read_dataset
from partfer.data_prep.readers.folder import NO_REGEX_NOTE


# ---------------------------------------------------------------- JAFFE

def test_jaffe_good_names_become_records(tmp_path, write_image):
    write_image(tmp_path / "KA.AN1.39.tiff")
    write_image(tmp_path / "YM.NE3.51.TIFF")           # extensions are case-insensitive
    write_image(tmp_path / "NA.HA2.202.png")
    (tmp_path / "landmarks").mkdir()
    (tmp_path / "landmarks" / "KA.AN1.39.txt").write_text("1 2\n" * 68)

    result = read_dataset("jaffe", tmp_path)

    assert result.rejects == []
    assert [r.rel_path for r in result.records] == ["KA.AN1.39.tiff", "NA.HA2.202.png", "YM.NE3.51.TIFF"]
    first = result.records[0]
    assert first == Record(path=str(tmp_path.resolve() / "KA.AN1.39.tiff"), rel_path="KA.AN1.39.tiff",
                           label="anger", subject="KA", group="KA.AN1", split="all",
                           landmarks_path=str(tmp_path.resolve() / "landmarks" / "KA.AN1.39.txt"))
    assert [(r.label, r.subject, r.group) for r in result.records[1:]] == [
        ("happiness", "NA", "NA.HA2"), ("neutral", "YM", "YM.NE3")]
    assert result.records[1].landmarks_path is None


def test_jaffe_bad_names_and_non_images_are_rejects_with_reasons(tmp_path, write_image):
    write_image(tmp_path / "KA.AN1.39.tiff")
    write_image(tmp_path / "KA.AN.39.tiff")            # no index
    write_image(tmp_path / "KA.XX1.40.tiff")           # unknown expression code
    write_image(tmp_path / "portrait.jpg")             # no structure at all
    (tmp_path / "README.txt").write_text("JAFFE")
    write_image(tmp_path / "extra" / "KM.SU1.5.tiff")  # sub-folders are not part of the layout: a reject

    result = read_dataset("jaffe", tmp_path)

    assert [r.rel_path for r in result.records] == ["KA.AN1.39.tiff"]
    reasons = {r.source_path: r.reason for r in result.rejects}
    assert set(reasons) == {"KA.AN.39.tiff", "KA.XX1.40.tiff", "portrait.jpg", "README.txt", "extra/KM.SU1.5.tiff"}
    assert reasons["extra/KM.SU1.5.tiff"].startswith("inside a subfolder")
    assert "does not follow" in reasons["KA.AN.39.tiff"]
    assert "unknown expression code 'XX'" in reasons["KA.XX1.40.tiff"]
    assert "does not follow" in reasons["portrait.jpg"]
    assert reasons["README.txt"] == "not an image file"


# ---------------------------------------------------------------- folder per class

def _ck48_like(root, write_image):
    write_image(root / "anger" / "S010_004_00000017.png")
    write_image(root / "anger" / "S011_002_00000009.png")
    write_image(root / "happy" / "S010_006_00000015.png")
    write_image(root / "Surprise" / "S014_001_00000020.png")
    (root / "landmarks" / "anger").mkdir(parents=True)
    (root / "landmarks" / "anger" / "S010_004_00000017.txt").write_text("3 4\n" * 68)


def test_folder_layout_with_named_groups(tmp_path, write_image):
    _ck48_like(tmp_path, write_image)
    result = read_dataset("folder", tmp_path, subject_regex=r"^(?P<subject>S\d+)_(?P<group>\d+)_")

    assert result.rejects == [] and result.notes == []
    got = [(r.rel_path, r.label, r.subject, r.group) for r in result.records]
    assert got == [
        ("Surprise/S014_001_00000020.png", "surprise", "S014", "S014.001"),
        ("anger/S010_004_00000017.png", "anger", "S010", "S010.004"),
        ("anger/S011_002_00000009.png", "anger", "S011", "S011.002"),
        ("happy/S010_006_00000015.png", "happiness", "S010", "S010.006"),
    ]
    by_path = {r.rel_path: r for r in result.records}
    assert by_path["anger/S010_004_00000017.png"].landmarks_path.endswith("landmarks/anger/S010_004_00000017.txt")
    assert by_path["happy/S010_006_00000015.png"].landmarks_path is None


def test_folder_layout_with_one_unnamed_group(tmp_path, write_image):
    _ck48_like(tmp_path, write_image)
    result = read_dataset("folder", tmp_path, subject_regex=r"^(S\d+)_")
    assert {(r.subject, r.group) for r in result.records} == {("S010", "S010"), ("S011", "S011"), ("S014", "S014")}


def test_folder_layout_without_regex_makes_each_image_a_subject_and_says_so(tmp_path, write_image):
    _ck48_like(tmp_path, write_image)
    result = read_dataset("folder", tmp_path)
    assert [r.subject for r in result.records] == [
        "S014_001_00000020", "S010_004_00000017", "S011_002_00000009", "S010_006_00000015"]
    assert result.notes == [NO_REGEX_NOTE]


def test_folder_layout_rejects_unknown_classes_stray_files_and_unmatched_names(tmp_path, write_image):
    _ck48_like(tmp_path, write_image)
    write_image(tmp_path / "smirk" / "S020_001_00000001.png")
    write_image(tmp_path / "smirk" / "S020_001_00000002.png")
    write_image(tmp_path / "loose.png")
    (tmp_path / "anger" / "notes.txt").write_text("x")
    write_image(tmp_path / "anger" / "unnamed.png")

    result = read_dataset("folder", tmp_path, subject_regex=r"^(S\d+)_")

    assert len(result.records) == 4
    assert result.rejects == sorted([
        Reject("anger/notes.txt", "not an image file"),
        Reject("anger/unnamed.png", "file name does not match subject_regex '^(S\\\\d+)_'"),
        Reject("loose.png", "file outside any class folder"),
        Reject("smirk/S020_001_00000001.png", "unknown class folder 'smirk'"),
        Reject("smirk/S020_001_00000002.png", "unknown class folder 'smirk'"),
    ], key=lambda r: (r.source_path, r.reason))


def test_subject_regex_must_name_a_subject(tmp_path, write_image):
    _ck48_like(tmp_path, write_image)
    with pytest.raises(ValueError, match="one group or a named group 'subject'"):
        read_dataset("folder", tmp_path, subject_regex=r"^S\d+_")
    with pytest.raises(ValueError, match="not a valid regex"):
        read_dataset("folder", tmp_path, subject_regex=r"^(S\d+")


# ---------------------------------------------------------------- registry and roots

def test_missing_empty_or_file_root_raises_dataset_root_error(tmp_path, write_image):
    with pytest.raises(DatasetRootError, match=f"does not exist: {tmp_path / 'nowhere'}"):
        read_dataset("jaffe", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetRootError, match="is empty"):
        read_dataset("folder", tmp_path / "empty")
    write_image(tmp_path / "a.png")
    with pytest.raises(DatasetRootError, match="not a folder"):
        read_dataset("jaffe", tmp_path / "a.png")
    assert issubclass(DatasetRootError, FileNotFoundError)


def test_unknown_layout_lists_known_ones_and_unknown_options_are_refused(tmp_path, write_image):
    write_image(tmp_path / "KA.AN1.1.tiff")
    assert {"jaffe", "folder"} <= set(known_layouts())
    with pytest.raises(UnknownNameError, match="known layouts: ckplus, fer2013, folder, jaffe, sfew"):
        get_reader("ckplus-official-typo")
    with pytest.raises(ValueError, match="does not take options"):
        read_dataset("jaffe", tmp_path, subject_regex="(x)")
