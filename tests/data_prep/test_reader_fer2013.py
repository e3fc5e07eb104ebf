"""data_prep/readers/fer2013.py and the CSV-row image source (data_prep/csv_images.py, image_io)."""
from __future__ import annotations

import numpy as np
import pytest

from partfer.data_prep.detectors import load_detector
from partfer.data_prep.errors import DatasetRootError, RejectError
from partfer.data_prep.image_io import load_grayscale
from partfer.data_prep.image_members import member_path
from partfer.data_prep.pipeline import PrepRequest, prepare_dataset
from partfer.data_prep.prep_store import read_rejects_csv
from partfer.data_prep.prepared import load_prepared
from partfer.data_prep.preprocess import apply_clahe, locate_face
from partfer.data_prep.readers import Reject, read_dataset
from partfer.data_prep.readers.fer2013 import NO_SUBJECTS_NOTE, NO_USAGE_NOTE, CsvLayoutError
from partfer.data_prep.settings import PrepSettings
from partfer.data_prep.synth import generate

FER_CODES = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4, "surprise": 5, "neutral": 6}


def _pixels(image: np.ndarray, sep: str = " ") -> str:
    return sep.join(str(v) for v in image.reshape(-1))


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)


def _write_csv(path, header, rows) -> None:
    with open(path, "w", newline="") as fh:
        fh.write(header + "\n")
        for row in rows:
            fh.write(row + "\n")


def _fer_file(root):
    """Good rows 0, 1, 2, 11 (double spaces), 10 (a value above 255); bad rows 3-8; blank line 9."""
    too_bright = _image(10).astype(int)
    too_bright[5, 7] = 300
    rows = [
        f"3,{_pixels(_image(0))},Training",
        f"6,{_pixels(_image(1))},PublicTest",
        f"0,{_pixels(_image(2))},PrivateTest",
        f"7,{_pixels(_image(3))},Training",
        f"2,{_pixels(_image(4).reshape(-1)[:-1])},Training",
        f"x,{_pixels(_image(5))},Training",
        f"1,{_pixels(_image(6))},Holdout",
        f"1,{_pixels(_image(7))}",
        f"1,{_pixels(_image(8))[:-3]}12a,Training",
        "",
        f"5,{_pixels(too_bright)},Training",
        f"4,{_pixels(_image(11), sep='  ')},Training",
    ]
    _write_csv(root / "fer2013.csv", "emotion,pixels,Usage", rows)


def test_rows_become_records_with_splits_and_bad_rows_are_rejects_naming_the_row(tmp_path):
    _fer_file(tmp_path)
    (tmp_path / "fer2013.bib").write_text("@article{...}")

    result = read_dataset("fer2013", tmp_path)

    got = [(r.rel_path, r.label, r.split, r.subject) for r in result.records]
    assert got == [
        ("fer2013.csv#row=000000", "happiness", "train", "row000000"),
        ("fer2013.csv#row=000001", "neutral", "val", "row000001"),
        ("fer2013.csv#row=000002", "anger", "test", "row000002"),
        ("fer2013.csv#row=000010", "surprise", "train", "row000010"),
        ("fer2013.csv#row=000011", "sadness", "train", "row000011"),
    ]
    assert result.records[0].path == member_path(tmp_path.resolve() / "fer2013.csv", "row=000000")
    assert all(r.landmarks_path is None for r in result.records)
    assert result.rejects == [
        Reject("fer2013.bib", "not part of the FER2013 layout (only fer2013.csv is read)"),
        Reject("fer2013.csv#row=000003", "line 5: emotion '7' is not a code 0-6"),
        Reject("fer2013.csv#row=000004", "line 6: 2303 pixel values, expected 2304 (48x48)"),
        Reject("fer2013.csv#row=000005", "line 7: emotion 'x' is not a code 0-6"),
        Reject("fer2013.csv#row=000006",
               "line 8: unknown Usage 'Holdout' (expected Training, PublicTest or PrivateTest)"),
        Reject("fer2013.csv#row=000007", "line 9: has 2 fields, expected 3 (emotion,pixels,usage)"),
        Reject("fer2013.csv#row=000008", "line 10: pixels are not space-separated non-negative integers"),
    ]
    assert result.notes == [NO_SUBJECTS_NOTE]


def test_load_grayscale_decodes_a_row_and_rejects_bad_pixels(tmp_path):
    _fer_file(tmp_path)
    records = {r.rel_path: r for r in read_dataset("fer2013", tmp_path).records}
    for row, seed in (("000000", 0), ("000001", 1), ("000002", 2), ("000011", 11)):
        image = load_grayscale(records[f"fer2013.csv#row={row}"].path)
        assert image.dtype == np.uint8
        np.testing.assert_array_equal(image, _image(seed))
    with pytest.raises(RejectError, match=r"fer2013.csv#row=000010 \(line 12\): pixel value 300 is above 255"):
        load_grayscale(records["fer2013.csv#row=000010"].path)
    with pytest.raises(RejectError, match="the CSV has only 12 rows"):
        load_grayscale(member_path(tmp_path / "fer2013.csv", "row=000012"))
    with pytest.raises(RejectError, match="a CSV member must be 'row=<n>'"):
        load_grayscale(member_path(tmp_path / "fer2013.csv", "line=3"))


def test_a_real_file_with_a_hash_in_its_name_is_still_a_file(tmp_path, write_image):
    path = write_image(tmp_path / "odd#name.csv.png")
    assert load_grayscale(path).shape == (32, 32)


def test_preprocessing_takes_the_same_path_for_rows(tmp_path):
    _fer_file(tmp_path)
    record = read_dataset("fer2013", tmp_path).records[0]
    settings = PrepSettings(detector="none", crop_size=48)
    face = locate_face(record, load_detector("none", settings), settings)
    np.testing.assert_array_equal(face.crop, apply_clahe(_image(0)))
    assert face.box == (0, 0, 48, 48)


def test_header_variants_and_whole_run_errors(tmp_path):
    _write_csv(tmp_path / "FER2013.CSV", "emotion, Usage, pixels",
               [f"2, PublicTest, {_pixels(_image(0))}", f'5,"Training","{_pixels(_image(1))}"'])
    result = read_dataset("fer2013", tmp_path)
    assert [(r.label, r.split) for r in result.records] == [("fear", "val"), ("surprise", "train")]
    np.testing.assert_array_equal(load_grayscale(result.records[1].path), _image(1))

    _write_csv(tmp_path / "FER2013.CSV", "emotion,pixels", [f"2,{_pixels(_image(0))}"])
    result = read_dataset("fer2013", tmp_path)
    assert [r.split for r in result.records] == ["all"] and NO_USAGE_NOTE in result.notes

    _write_csv(tmp_path / "FER2013.CSV", "label,image,Usage", [f"2,{_pixels(_image(0))},Training"])
    with pytest.raises(CsvLayoutError, match="header label,image,usage lacks column\\(s\\) emotion, pixels"):
        read_dataset("fer2013", tmp_path)
    assert issubclass(CsvLayoutError, ValueError)

    (tmp_path / "FER2013.CSV").unlink()
    _write_csv(tmp_path / "train.csv", "emotion,pixels", [f"4,{_pixels(_image(0))}"])
    with pytest.raises(DatasetRootError, match="no fer2013.csv in"):
        read_dataset("fer2013", tmp_path)
    assert [r.label for r in read_dataset("fer2013", tmp_path, csv_name="train.csv").records] == ["sadness"]


@pytest.mark.slow
def test_rows_go_through_the_ray_pipeline(tmp_path, shared_ray):
    """Ray workers decode the rows themselves: a prepared set with the good rows, and rejects.csv
    holding both the reader's rejects and the row whose pixels fail to decode."""
    root = tmp_path / "fer"
    root.mkdir()
    faces = list(generate(subjects=1, per_class=1, seed=4, size=48, classes=tuple(FER_CODES)))
    rows = [f"{FER_CODES[f.label]},{_pixels(f.image)},{'Training' if i < 5 else 'PublicTest'}"
            for i, f in enumerate(faces)]
    rows.insert(2, f"9,{_pixels(faces[0].image)},Training")
    rows.append(f"3,{_pixels(faces[0].image).rsplit(' ', 1)[0]} 999,Training")
    _write_csv(root / "fer2013.csv", "emotion,pixels,Usage", rows)

    info = prepare_dataset(PrepRequest("fer", "fer2013", str(root), PrepSettings(detector="none", crop_size=48)),
                           tmp_path / "out", progress=False)

    assert info.n_ok == 7 and info.n_rejected == 2
    prepared = load_prepared(info.path)
    assert sorted(prepared.labels) == sorted(FER_CODES)
    assert prepared.splits.count("val") == 2 and prepared.source_paths[0] == "fer2013.csv#row=000000"
    expected = apply_clahe(next(f.image for f in faces if f.label == prepared.labels[0]))
    np.testing.assert_array_equal(prepared.images[0], expected)
    rejects = {r.source_path: r.reason for r in read_rejects_csv(f"{info.path}/rejects.csv")}
    assert rejects["fer2013.csv#row=000002"] == "line 4: emotion '9' is not a code 0-6"
    assert rejects["fer2013.csv#row=000008"].endswith("(line 10): pixel value 999 is above 255")
