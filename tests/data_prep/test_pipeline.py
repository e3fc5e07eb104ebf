from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from partfer.data_prep.annotators import load_annotator
from partfer.data_prep.detectors import load_detector
from partfer.data_prep.errors import DatasetRootError, EmptyDatasetError, PreparedDataError
from partfer.data_prep.landmark_files import read_points
from partfer.data_prep.pipeline import PrepRequest, PrepSettings, prepare_datasets
from partfer.data_prep.prepared import find_prepared, load_prepared
from partfer.data_prep.preprocess import prepare_record
from partfer.data_prep.readers import read_dataset
from partfer.data_prep.schema import SUCCESS_MARKER
from partfer.data_prep.synth import synthesize

GROUND_TRUTH = PrepSettings(detector="none", annotator="dataset")
SIZE = 96

pytestmark = pytest.mark.slow          # the Ray Data pipeline, run for real: seconds a run


@pytest.fixture(scope="module")
def raw(tmp_path_factory, write_image) -> dict[str, Path]:
    """A tiny synthetic JAFFE (3 subjects x 1 per class) with a corrupt and a badly named file,
    and the same faces in the folder-per-class layout."""
    base = tmp_path_factory.mktemp("raw")
    jaffe = Path(synthesize("jaffe", base / "jaffe", subjects=3, per_class=1, size=SIZE).out_dir)
    folder = base / "folder"
    for record in read_dataset("jaffe", jaffe).records:
        stem = Path(record.rel_path).stem.replace(".", "_")
        (folder / record.label).mkdir(parents=True, exist_ok=True)
        (folder / "landmarks" / record.label).mkdir(parents=True, exist_ok=True)
        shutil.copy(record.path, folder / record.label / f"{stem}.tiff")
        shutil.copy(record.landmarks_path, folder / "landmarks" / record.label / f"{stem}.txt")
    (jaffe / "KM.SU2.99.tiff").write_bytes(b"II*\x00 truncated tiff")          # parses, cannot be decoded
    write_image(jaffe / "holiday photo.png", size=SIZE)                        # decodes, name does not parse
    return {"jaffe": jaffe, "folder": folder}


@pytest.fixture(scope="module")
def first_run(raw, tmp_path_factory, shared_ray):
    out = tmp_path_factory.mktemp("out")
    requests = [
        PrepRequest("synjaffe", "jaffe", str(raw["jaffe"]), GROUND_TRUTH),
        PrepRequest("synfolder", "folder", str(raw["folder"]), GROUND_TRUTH, {"subject_regex": r"^([A-Z]{2})_"}),
    ]
    return out, requests, prepare_datasets(requests, out, progress=False)


def test_prepares_both_data_sets_in_one_run(first_run):
    out, _, infos = first_run
    assert list(infos) == ["synjaffe", "synfolder"]
    jaffe, folder = infos["synjaffe"], infos["synfolder"]
    assert (jaffe.n_ok, jaffe.n_rejected, jaffe.reused) == (21, 2, False)
    assert (folder.n_ok, folder.n_rejected, folder.reused) == (21, 0, False)
    assert jaffe.classes == ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
    for info in infos.values():
        path = Path(info.path)
        assert path.parent == out / "prepared" and path.name.startswith(info.name + "-")
        assert sorted(p.name for p in path.iterdir()) == [SUCCESS_MARKER, "data", "manifest.json", "rejects.csv"]
    assert not [p for p in (out / "prepared").iterdir() if ".tmp-" in p.name]


def test_rejects_csv_lists_every_unused_input_with_its_reason(first_run):
    _, _, infos = first_run
    with open(Path(infos["synjaffe"].path) / "rejects.csv", newline="") as fh:
        rows = {row["source_path"]: row["reason"] for row in csv.DictReader(fh)}
    assert set(rows) == {"KM.SU2.99.tiff", "holiday photo.png"}
    assert rows["KM.SU2.99.tiff"].startswith("unreadable image")
    assert rows["holiday photo.png"].startswith("file name does not follow")


def test_manifest_counts_match_the_data(first_run, raw):
    _, _, infos = first_run
    manifest = json.loads((Path(infos["synjaffe"].path) / "manifest.json").read_text())
    assert manifest["name"] == "synjaffe" and manifest["layout"] == "jaffe"
    assert manifest["root"] == str(raw["jaffe"].resolve())
    assert manifest["settings"] == GROUND_TRUTH.to_dict()
    assert (manifest["n_ok"], manifest["n_rejected"], manifest["n_rejected_by_reader"]) == (21, 2, 1)
    assert manifest["counts"]["label"] == {c: 3 for c in manifest["classes"]}
    assert manifest["counts"]["subject"] == {"KA": 7, "KL": 7, "KM": 7}
    assert manifest["counts"]["split"] == {"all": 21}
    assert manifest["rejects_by_reason"] == {"file name does not follow SUBJECT.CODEn.ID": 1, "unreadable image": 1}
    assert {"numpy", "ray", "pyarrow", "opencv-python-headless"} <= set(manifest["versions"])
    assert manifest["hash"] == Path(infos["synjaffe"].path).name.split("-")[-1]
    assert manifest["hash_inputs"]["n_input_files"] == 2 * 21 + 2
    data = load_prepared(infos["synjaffe"].path)
    assert len(data) == manifest["n_ok"]


def test_second_call_reuses_without_work(first_run):
    out, requests, infos = first_run
    marker = Path(infos["synjaffe"].path) / SUCCESS_MARKER
    before = marker.stat().st_mtime_ns
    again = prepare_datasets(requests, out, progress=False)
    assert all(info.reused for info in again.values())
    assert {k: v.path for k, v in again.items()} == {k: v.path for k, v in infos.items()}
    assert marker.stat().st_mtime_ns == before


def test_load_prepared_round_trips_images_and_landmarks(first_run, raw):
    _, _, infos = first_run
    data = load_prepared(infos["synjaffe"].path)
    assert data.sample_ids == sorted(data.sample_ids)
    assert data.images.shape == (21, 160, 160) and data.images.dtype == np.uint8
    assert data.landmarks.shape == (21, 68, 2) and data.landmarks.dtype == np.float32
    assert data.classes == infos["synjaffe"].classes
    assert data.labels[data.sample_ids.index("KA.AN1.1.tiff")] == "anger"
    assert set(data.subjects) == {"KA", "KL", "KM"} and set(data.splits) == {"all"}
    assert data.groups[data.sample_ids.index("KL.HA1.11.tiff")] == "KL.HA1"
    assert data.source_paths == data.sample_ids
    # Same pixels and points as preprocessing the file here, outside Ray.
    records = {r.rel_path: r for r in read_dataset("jaffe", raw["jaffe"]).records}
    for i in (0, 10, 20):
        record = records[data.sample_ids[i]]
        row = prepare_record(record, load_detector("none"), load_annotator("dataset"), GROUND_TRUTH)
        assert np.array_equal(data.images[i], np.frombuffer(row["image"], np.uint8).reshape(160, 160))
        truth = read_points(record.landmarks_path)
        np.testing.assert_allclose(data.landmarks[i], ((truth + 0.5) * 160 / SIZE - 0.5) / 160, atol=1e-5)
    folder = load_prepared(infos["synfolder"].path)
    assert set(folder.subjects) == {"KA", "KL", "KM"}


def test_find_prepared_ignores_unfinished_directories(first_run):
    out, _, infos = first_run
    finished = Path(infos["synjaffe"].path)
    leftover = finished.with_name(finished.name + ".tmp-0123456789abcdef")
    shutil.copytree(finished, leftover)                    # even a complete-looking leftover build
    unmarked = finished.with_name("synjaffe-0123456789ab")
    unmarked.mkdir()
    assert find_prepared(out, "synjaffe") == [str(finished)]
    assert find_prepared(out, "nothing") == []
    with pytest.raises(PreparedDataError, match="no _SUCCESS"):
        load_prepared(unmarked)


def test_changed_settings_prepare_a_new_directory(first_run, raw):
    out, _, infos = first_run
    small = PrepSettings(detector="none", annotator="dataset", crop_size=64)
    info = prepare_datasets([PrepRequest("synjaffe", "jaffe", str(raw["jaffe"]), small)], out, progress=False)["synjaffe"]
    assert not info.reused and info.path != infos["synjaffe"].path
    assert load_prepared(info.path).images.shape == (21, 64, 64)
    assert len(find_prepared(out, "synjaffe")) == 2


def test_a_data_set_with_every_image_rejected_names_its_rejects(tmp_path, raw, shared_ray):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("KA.AN1.1.tiff", "KA.HA1.2.tiff"):
        (broken / name).write_bytes(b"not an image")
    with pytest.raises(EmptyDatasetError, match=r"every image was rejected \(2\); reasons in .*\.rejects\.csv"):
        prepare_datasets([PrepRequest("broken", "jaffe", str(broken), GROUND_TRUTH)], tmp_path / "out", progress=False)
    rejects = list((tmp_path / "out" / "prepared").glob("broken-*.rejects.csv"))
    assert len(rejects) == 1 and rejects[0].read_text().count("unreadable image") == 2
    assert find_prepared(tmp_path / "out", "broken") == []
    assert [p.name for p in (tmp_path / "out" / "prepared").iterdir() if p.is_dir()] == []


def test_whole_run_problems_raise_before_any_work(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.txt").write_text("nothing here")
    with pytest.raises(EmptyDatasetError, match=r"no usable images .*\(1 file rejected; e\.g\. README\.txt: not an image file\)"):
        prepare_datasets([PrepRequest("empty", "jaffe", str(tmp_path / "notes"), GROUND_TRUTH)], tmp_path / "out")
    with pytest.raises(DatasetRootError, match="does not exist"):
        prepare_datasets([PrepRequest("gone", "jaffe", str(tmp_path / "gone"), GROUND_TRUTH)], tmp_path / "out")
    with pytest.raises(ValueError, match="unique"):
        prepare_datasets([PrepRequest("a", "jaffe", "x"), PrepRequest("a", "jaffe", "y")], tmp_path / "out")
    with pytest.raises(ValueError, match="names a folder"):
        prepare_datasets([PrepRequest("../evil", "jaffe", str(tmp_path))], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_paper_chain_ssd_and_dlib_runs_in_ray_actors(tmp_path, astronaut_png, write_image, shared_ray):
    """The default settings (SSD + dlib) load their models inside the actors and find one face."""
    root = tmp_path / "photos"
    (root / "neutral").mkdir(parents=True)
    shutil.copy(astronaut_png, root / "neutral" / "astronaut.png")
    write_image(root / "neutral" / "wall.png", size=200, value=90)
    info = prepare_datasets([PrepRequest("photos", "folder", str(root), PrepSettings())],
                            tmp_path / "out", progress=False)["photos"]
    assert (info.n_ok, info.n_rejected) == (2, 0)          # the faceless wall gets the fallback crop
    data = load_prepared(info.path)
    assert data.sample_ids == ["neutral/astronaut.png", "neutral/wall.png"] and data.images.shape == (2, 160, 160)
    assert data.face_fallback.tolist() == [False, True] and data.landmarks_ok.tolist() == [True, False]
    eyes, mouth = data.landmarks[0, 36:48], data.landmarks[0, 48:68]
    assert eyes[:, 1].max() < mouth[:, 1].min()
    manifest = json.loads((Path(info.path) / "manifest.json").read_text())
    assert manifest["notes"] and "subject_regex" in manifest["notes"][0]
