"""Hostile inputs: broken links, unreadable folders, stray subfolders, damaged prepared data,
names that are not UTF-8, FIFOs named like images, images whose header claims a huge size.

Each becomes a rejects.csv row or a one-line error naming the path, never a traceback, a hang or
a silently skipped file, and the input folder is left as it was. Tests run as root here, and root
reads anything whatever its mode, so an unreadable folder is simulated: its mode is cleared (which
is what makes it unreadable for anyone else) AND listing it through os.scandir / os.listdir raises
PermissionError.
"""
from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hostile_files import fifo, non_utf8, tree_state, write_big_png, write_png

from partfer.cli.prep import main
from partfer.data_prep.errors import DatasetRootError, PreparedDataError, RejectError
from partfer.data_prep.image_io import load_grayscale
from partfer.data_prep.pipeline import PrepRequest, PrepSettings, prepare_datasets
from partfer.data_prep.prep_store import read_rejects_csv
from partfer.data_prep.prepared import load_prepared
from partfer.data_prep.readers import read_dataset
from partfer.data_prep.readers.base import BROKEN_LINK
from partfer.data_prep.synth import synthesize

GROUND_TRUTH = PrepSettings(detector="none", annotator="dataset", crop_size=32)


@pytest.fixture
def make_unreadable(monkeypatch):
    """make_unreadable(folder): listing it fails with PermissionError, for root too."""
    blocked: set[str] = set()
    real_scandir, real_listdir = os.scandir, os.listdir

    def check(path) -> None:
        if os.path.realpath(os.fspath(path)) in blocked:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))

    def scandir(path="."):
        check(path)
        return real_scandir(path)

    def listdir(path="."):
        check(path)
        return real_listdir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "listdir", listdir)
    chmodded: list[Path] = []

    def make(folder: Path) -> Path:
        blocked.add(os.path.realpath(folder))
        folder.chmod(0)
        chmodded.append(folder)
        return folder

    yield make
    for folder in chmodded:
        folder.chmod(0o755)


def _reasons(read) -> dict[str, str]:
    return {r.source_path: r.reason for r in read.rejects}


@pytest.fixture
def jaffe(tmp_path) -> Path:
    return Path(synthesize("jaffe", tmp_path / "jaffe", subjects=1, per_class=1, size=48).out_dir)


@pytest.mark.slow
def test_symlink_loop_and_dangling_link_are_rejects_not_a_failed_run(jaffe, tmp_path, shared_ray):
    (jaffe / "a.tiff").symlink_to("a.tiff")                     # ln -s a.tiff a.tiff
    (jaffe / "KA.AN9.9.tiff").symlink_to("gone.tiff")           # dangling
    info = prepare_datasets([PrepRequest("links", "jaffe", str(jaffe), GROUND_TRUTH)], tmp_path / "out",
                            progress=False)["links"]
    assert (info.n_ok, info.n_rejected) == (7, 2)
    rejects = {r.source_path: r.reason for r in read_rejects_csv(Path(info.path) / "rejects.csv")}
    assert rejects == {"a.tiff": BROKEN_LINK, "KA.AN9.9.tiff": BROKEN_LINK}


def test_broken_links_inside_class_folders_are_rejects(tmp_path):
    root = tmp_path / "folder"
    (root / "anger").mkdir(parents=True)
    (root / "anger" / "loop.png").symlink_to("loop.png")
    (root / "anger" / "gone.png").symlink_to("nowhere.png")
    (root / "happy.png").symlink_to("nowhere.png")
    read = read_dataset("folder", root)
    assert _reasons(read) == {"anger/gone.png": BROKEN_LINK, "anger/loop.png": BROKEN_LINK,
                              "happy.png": BROKEN_LINK}


def test_a_jaffe_image_in_a_subfolder_is_a_reject(jaffe):
    (jaffe / "extra").mkdir()
    shutil.copy(jaffe / "KA.AN1.1.tiff", jaffe / "extra" / "KA.AN1.1.tiff")
    read = read_dataset("jaffe", jaffe)
    assert len(read.records) == 7
    assert _reasons(read) == {"extra/KA.AN1.1.tiff": "inside a subfolder (JAFFE is one flat folder; "
                                                     "only landmarks/ is read)"}


def test_an_unreadable_class_folder_is_a_reject_in_the_folder_layout(tmp_path, write_image, make_unreadable):
    root = tmp_path / "folder"
    write_image(root / "happy" / "a.png")
    write_image(root / "anger" / "b.png")
    make_unreadable(root / "anger")
    read = read_dataset("folder", root)
    assert [r.rel_path for r in read.records] == ["happy/a.png"]
    assert _reasons(read) == {"anger": "unreadable folder, its files cannot be listed "
                                       "(PermissionError: Permission denied)"}


def test_an_unreadable_class_folder_is_a_reject_in_the_sfew_layout(tmp_path, make_unreadable):
    root = Path(synthesize("sfew", tmp_path / "sfew", subjects=2, per_class=1, size=48,
                           classes=("anger", "happiness")).out_dir)
    unreadable = next(p for p in sorted((root / "Train").iterdir()) if p.is_dir())
    n_inside = len(list(unreadable.iterdir()))
    before = len(read_dataset("sfew", root).records)
    make_unreadable(unreadable)
    read = read_dataset("sfew", root)
    assert len(read.records) == before - n_inside
    assert _reasons(read)[f"Train/{unreadable.name}"].startswith("unreadable folder")


def test_an_unreadable_sequence_folder_is_a_reject_in_the_ckplus_layout(tmp_path, make_unreadable):
    root = Path(synthesize("ckplus", tmp_path / "ck", subjects=1, per_class=1, size=48,
                           classes=("anger", "happiness")).out_dir)
    sequence = root / "cohn-kanade-images" / "S005" / "001"
    make_unreadable(sequence)
    read = read_dataset("ckplus", root)
    assert {r.group for r in read.records} == {"S005/002"}
    assert _reasons(read)["cohn-kanade-images/S005/001"].startswith("unreadable folder")


def test_an_unreadable_root_is_one_line_naming_it(jaffe, tmp_path, capsys, make_unreadable):
    make_unreadable(jaffe)
    with pytest.raises(DatasetRootError, match=f"cannot read data set root {jaffe}: PermissionError"):
        read_dataset("jaffe", jaffe)
    rc = main(["prep", "--dataset", "jaffe", "--root", str(jaffe), "--out", str(tmp_path / "out"),
               "--detector", "none", "--annotator", "dataset", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith(f"partfer prep: error: cannot read data set root {jaffe}")


@pytest.fixture
def prepared(jaffe, tmp_path, shared_ray) -> Path:
    return Path(prepare_datasets([PrepRequest("ok", "jaffe", str(jaffe), GROUND_TRUTH)], tmp_path / "out",
                                 progress=False)["ok"].path)


@pytest.mark.slow
def test_a_truncated_parquet_file_is_one_error_naming_it(prepared):
    part = next((prepared / "data").glob("*.parquet"))
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    with pytest.raises(PreparedDataError, match=f"cannot read {part}: .*truncated") as err:
        load_prepared(prepared)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_a_manifest_whose_classes_disagree_with_the_data_is_refused(prepared):
    manifest_path = prepared / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["classes"] = [c for c in manifest["classes"] if c != "fear"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(PreparedDataError, match=r"lists classes \[.*\] but data/ holds labels \{.*'fear': 1"):
        load_prepared(prepared)
    manifest["classes"] = sorted(manifest["classes"] + ["contempt", "fear"])   # a class with no rows
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(PreparedDataError, match="'contempt'"):
        load_prepared(prepared)


# ---- names that are not UTF-8, FIFOs, images too large to decode ---------------------------------

CAFE = b"caf\xe9_\xff"          # Latin-1 e-acute, and a byte no UTF-8 text holds
NOT_REGULAR = "not a regular file"


def _rejects_csv(path: Path) -> dict[str, dict]:
    """rejects.csv's rows by source_path, read as strict UTF-8 (what any CSV reader expects)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["source_path"]: row for row in csv.DictReader(fh)}


def test_reading_a_fifo_named_like_an_image_is_a_reject_not_a_hang(tmp_path):
    with fifo(tmp_path / "face.png") as path:
        with pytest.raises(RejectError, match=r"^not a regular file: face\.png is a FIFO"):
            load_grayscale(path)


def test_a_fifo_named_like_a_jaffe_image_is_a_reject(jaffe):
    with fifo(jaffe / "KA.HA9.9.tiff"):
        read = read_dataset("jaffe", jaffe)
    assert len(read.records) == 7
    assert _reasons(read) == {"KA.HA9.9.tiff": NOT_REGULAR}


def test_an_image_whose_header_claims_too_many_pixels_is_refused_before_decoding(tmp_path):
    big = write_big_png(tmp_path / "big.png", 10_000, 6_000)             # 60 megapixels, ~60 kB
    assert big.stat().st_size < 100_000
    with pytest.raises(RejectError, match=r"^image too large: big\.png is 10000x6000 \(60\.0 megapixels; "
                                          r"the cap is 50\)$"):
        load_grayscale(big)
    claim = write_big_png(tmp_path / "claim.png", 20_000, 20_000, rows=4)   # the data is not there
    with pytest.raises(RejectError, match=r"^image too large: claim\.png is 400\.0 megapixels"):
        load_grayscale(claim)
    small = write_png(tmp_path / "small.png", np.zeros((20, 30), np.uint8))
    with pytest.raises(RejectError, match=r"small\.png is 30x20 \(0\.0 megapixels; the cap is 0\.0005\)"):
        load_grayscale(small, max_pixels=500)
    assert load_grayscale(small, max_pixels=600).shape == (20, 30)


def test_a_name_that_is_not_utf8_is_read_from_its_bytes(tmp_path):
    """In a child process: OpenCV, given such a path, crashed the process (SIGSEGV)."""
    write_png(non_utf8(tmp_path, CAFE + b".png"), np.full((20, 30), 9, np.uint8))
    code = ("import os, sys; from partfer.data_prep.image_io import load_grayscale; "
            "image = load_grayscale(os.path.join(sys.argv[1], os.fsdecode(bytes.fromhex(sys.argv[2])))); "
            "print(image.shape, sorted(set(image.ravel().tolist())))")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path), (CAFE + b".png").hex()], capture_output=True,
                         text=True, timeout=120)
    assert (run.returncode, run.stdout.strip()) == (0, "(20, 30) [9]"), run.stderr[-2000:]


def test_a_non_utf8_name_whose_text_is_another_files_name_is_a_reject(tmp_path, write_image):
    root = tmp_path / "folder"
    write_image(root / "anger" / "a\\xe9.png")                          # backslash, x, e, 9
    write_png(non_utf8(root / "anger", b"a\xe9.png"), np.zeros((32, 32), np.uint8))
    read = read_dataset("folder", root)
    assert [r.rel_path for r in read.records] == ["anger/a\\xe9.png"]
    reason = _reasons(read)[os.fsdecode(b"anger/a\xe9.png")]
    assert reason.startswith("its name is not UTF-8 and, written as UTF-8 text") and "anger/a\\xe9.png" in reason


@pytest.mark.slow
def test_hostile_files_in_a_jaffe_folder_are_rejects_and_the_folder_is_left_as_it_was(jaffe, tmp_path,
                                                                                        shared_ray):
    shutil.copy(jaffe / "KA.AN1.1.tiff", non_utf8(jaffe, CAFE + b".tiff"))   # its name cannot parse
    write_big_png(jaffe / "KA.HA9.9.png", 10_000, 6_000)
    with fifo(jaffe / "KA.SU9.9.tiff"):
        before = tree_state(jaffe)
        info = prepare_datasets([PrepRequest("hostile", "jaffe", str(jaffe), GROUND_TRUTH)], tmp_path / "out",
                                progress=False)["hostile"]
        assert tree_state(jaffe) == before
    assert (info.n_ok, info.n_rejected) == (7, 3)
    rows = _rejects_csv(Path(info.path) / "rejects.csv")
    assert set(rows) == {"caf\\xe9_\\xff.tiff", "KA.HA9.9.png", "KA.SU9.9.tiff"}
    assert bytes.fromhex(rows["caf\\xe9_\\xff.tiff"]["source_path_hex"]) == CAFE + b".tiff"
    assert rows["caf\\xe9_\\xff.tiff"]["reason"].startswith("file name does not follow")
    assert rows["KA.HA9.9.png"]["reason"].startswith("image too large: KA.HA9.9.png is 10000x6000")
    assert rows["KA.SU9.9.tiff"]["reason"] == NOT_REGULAR
    assert rows["KA.SU9.9.tiff"]["source_path_hex"] == ""                 # a UTF-8 name is its text
    assert os.fsdecode(CAFE + b".tiff") in {r.source_path for r in read_rejects_csv(Path(info.path) / "rejects.csv")}


@pytest.mark.slow
@pytest.mark.ray
def test_an_image_whose_name_is_not_utf8_is_prepared_under_a_text_that_gives_its_bytes_back(tmp_path, write_image):
    """Through `partfer prep` in a child process with its own private Ray: before, each Ray Data
    actor that read such a name crashed in OpenCV and was restarted for ever."""
    root, out = tmp_path / "folder", tmp_path / "out"
    write_png(non_utf8(root / "anger", CAFE + b".png"), np.full((40, 40), 60, np.uint8))
    write_image(root / "happiness" / "ok.png")
    non_utf8(root / "happiness", b"notes\xff.txt").write_text("not an image")
    before = tree_state(root)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run([sys.executable, "-m", "partfer.data_prep", "prep", "--dataset", "mixed", "--layout",
                          "folder", "--root", str(root), "--out", str(out), "--detector", "none", "--annotator",
                          "dataset", "--crop-size", "32", "--no-progress"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert tree_state(root) == before
    (prepared,) = (out / "prepared").iterdir()
    table = pq.read_table(prepared / "data").to_pylist()
    by_path = {row["source_path"]: row for row in table}
    assert set(by_path) == {"anger/caf\\xe9_\\xff.png", "happiness/ok.png"}
    row = by_path["anger/caf\\xe9_\\xff.png"]
    assert bytes.fromhex(row["source_path_hex"]) == b"anger/" + CAFE + b".png"
    assert row["sample_id"] == row["source_path"] and by_path["happiness/ok.png"]["source_path_hex"] is None
    assert len(set(row["image"])) == 1                     # its uniform pixels, through CLAHE
    rejects = _rejects_csv(prepared / "rejects.csv")
    assert bytes.fromhex(rejects["happiness/notes\\xff.txt"]["source_path_hex"]) == b"happiness/notes\xff.txt"
    assert load_prepared(prepared).source_paths == sorted(by_path)

@pytest.mark.slow
@pytest.mark.ray
def test_a_manifest_whose_counts_disagree_with_the_data_is_refused_in_one_line(prepared, jaffe, tmp_path, capsys):
    manifest_path = prepared / "manifest.json"
    whole = json.loads(manifest_path.read_text())
    reuse = ["prep", "--dataset", "ok", "--layout", "jaffe", "--root", str(jaffe), "--out", str(tmp_path / "out"),
             "--detector", "none", "--annotator", "dataset", "--crop-size", "32", "--no-progress"]
    assert main(reuse) == 0 and "ok: reused, 7 images" in capsys.readouterr().out
    manifest_path.write_text(json.dumps({**whole, "n_ok": 7000}))
    with pytest.raises(PreparedDataError, match=f"{manifest_path}: n_ok says 7000 images but data/ holds 7 rows"):
        load_prepared(prepared)
    assert main(reuse) == 2                         # reusing it would print its 7000 images
    out, err = capsys.readouterr()
    assert "7000" not in out and err.count("\n") == 1 and "n_ok says 7000 images but data/ holds 7 rows" in err
    subject = next(iter(whole["counts"]["subject"]))
    lying = {**whole, "counts": {**whole["counts"], "subject": {subject: 7, "KM": 5}}}
    manifest_path.write_text(json.dumps(lying))
    with pytest.raises(PreparedDataError, match=rf"{manifest_path}: counts.subject says 5 rows of subject 'KM' "
                                                rf"\(2 subjects in all\) but data/ holds 0 \(1 subjects in all\)"):
        load_prepared(prepared)
    assert main(reuse) == 2 and "counts.subject says 5 rows of subject 'KM'" in capsys.readouterr().err
