"""`partfer predict --annotate DIR` never writes over a file, refuses an input folder, and a drawing or
an output that cannot be written is one error line that keeps the predictions already made.

The model is a real exported directory of untrained sub-networks (conftest.untrained_model)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from partfer.cli import main


@pytest.fixture(scope="module")
def model(untrained_model) -> Path:
    return untrained_model


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (64, 48, 3), dtype=np.uint8))
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _predict(model: Path, *argv: str) -> int:
    return main(["predict", "--model", str(model), "--device", "cpu", "--no-progress", *argv])


def test_drawing_into_the_folder_of_the_inputs_never_writes_over_them(model, photos, tmp_path, capsys):
    before = _tree(photos)
    inputs = [str(photos / "a.png"), str(photos / "b.jpg")]
    assert _predict(model, *inputs, "--annotate", str(photos), "--out", str(tmp_path / "p.csv")) == 0, \
        capsys.readouterr().err
    assert {k: v for k, v in _tree(photos).items() if k in before} == before          # the inputs, untouched
    assert sorted(_tree(photos)) == ["a.annotated.png", "a.png", "b.annotated.jpg", "b.jpg"]
    assert cv2.imread(str(photos / "a.annotated.png")).shape == (64, 48, 3)
    drawn = _tree(photos)
    assert _predict(model, *inputs, "--annotate", str(photos), "--out", str(tmp_path / "p.csv")) == 0
    assert {k: v for k, v in _tree(photos).items() if k in drawn} == drawn           # nor the earlier drawings
    assert sorted(set(_tree(photos)) - set(drawn)) == ["a.annotated-2.png", "b.annotated-2.jpg"]
    assert not [p for p in photos.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("inside", [False, True])
def test_an_input_folder_as_annotate_folder_is_refused_in_one_line(model, photos, tmp_path, capsys, inside):
    target = photos / "drawn" if inside else photos
    before = _tree(photos)
    assert _predict(model, str(photos), "--annotate", str(target), "--out", str(tmp_path / "p.csv")) == 2
    err = capsys.readouterr().err
    said = "is inside the input folder" if inside else "is the input folder"
    assert err.count("\n") == 1 and err.startswith(f"partfer predict: error: --annotate {target} {said} {photos}"), err
    assert _tree(photos) == before and not (photos / "drawn").exists()


def test_an_annotate_path_that_is_a_file_is_one_line_and_the_file_is_kept(model, photos, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert _predict(model, str(photos / "a.png"), "--annotate", str(notes), "--out", str(tmp_path / "p.csv")) == 2
    err = capsys.readouterr().err
    assert err == f"partfer predict: error: --annotate {notes} is a file, not a folder\n"
    assert notes.read_text() == "mine"


def test_out_under_a_file_is_one_line_before_any_prediction(model, photos, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    out = notes / "p.csv"
    assert _predict(model, str(photos / "a.png"), "--out", str(out)) == 2
    assert capsys.readouterr().err == f"partfer predict: error: --out {out}: {notes} is a file, not a folder\n"
    assert notes.read_text() == "mine"


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's sysfs (a folder nobody may write, root neither)")
def test_a_folder_that_cannot_be_written_keeps_the_predictions_and_says_so_in_one_line(model, photos, tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert _predict(model, str(photos / "a.png"), str(photos / "b.jpg"), "--annotate", "/sys/kernel",
                    "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"partfer predict: error: --annotate /sys/kernel: cannot write the drawing of "
                              f"{photos / 'a.png'} ("), err
    assert err[-1].endswith(f"0 drawn; the predictions are kept in {out})")
    assert not any("Traceback" in line for line in err)
    rows = pd.read_csv(out)
    assert list(rows["input"]) == [str(photos / "a.png"), str(photos / "b.jpg")] and (rows["status"] == "ok").all()
