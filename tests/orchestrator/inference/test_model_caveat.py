"""A model trained on synthetic data or a shrunk budget says so: one warning line on stderr (with
its recorded test accuracy) and a `model_caveat` column on every row; a model.json written before
those fields were exported still loads, without a caveat. Real model directories (conftest)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
from conftest import DEMO_RUN, MEMBER_TEST_ACC, write_untrained_model

from partfer.cli import main
from partfer.orchestrator.inference.caveat import model_caveat
from partfer.orchestrator.inference.predict import Predictor
from partfer.orchestrator.storage.model_dir import read_spec

WHOLE_IMAGE = {"detector": "none", "annotator": "dataset", "crop_size": 32}


def _predict(model: Path, *argv: str) -> int:
    return main(["predict", "--model", str(model), "--device", "cpu", "--no-progress", *argv])


def test_a_demo_model_warns_once_with_its_test_accuracy_and_tags_every_row(ssd_model, astronaut_png, tmp_path,
                                                                          capsys):
    out = tmp_path / "p.csv"
    assert _predict(ssd_model, str(astronaut_png), str(astronaut_png), "--out", str(out)) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("partfer predict: warning:")]
    assert len(warnings) == 1, err
    assert "synthetic data (jaffe)" in warnings[0] and "shrunk budget (image size 32 instead of 64)" in warnings[0]
    assert f"{MEMBER_TEST_ACC:.3f}" in warnings[0]
    rows = pd.read_csv(out)
    assert len(rows) == 2 and (rows["model_caveat"] == "synthetic").all()


def test_a_shrunk_model_of_real_data_is_tagged_shrunk(tmp_path):
    model = write_untrained_model(tmp_path / "m", WHOLE_IMAGE,
                                  run={"synthetic": [], "shrunk": True, "shrunk_reasons": ["ensembles of 1 member(s)"]})
    caveat = Predictor.from_dir(model, device="cpu").caveat
    assert caveat.code == "shrunk" and "ensembles of 1 member(s)" in caveat.text and "synthetic" not in caveat.text
    assert "accuracy" not in caveat.text                  # none recorded (a final model tests nothing)


def test_a_model_json_without_the_run_fields_still_loads_and_warns_nothing(tmp_path, astronaut_png, capsys):
    model = write_untrained_model(tmp_path / "m", WHOLE_IMAGE, run=DEMO_RUN)
    old = tmp_path / "old"
    shutil.copytree(model, old)
    raw = json.loads((old / "model.json").read_text())
    del raw["run"]                                   # as an export from before these fields wrote it
    (old / "model.json").write_text(json.dumps(raw))
    assert model_caveat(read_spec(old)).code == ""
    out = tmp_path / "p.csv"
    assert _predict(old, str(astronaut_png), "--out", str(out)) == 0
    assert "warning" not in capsys.readouterr().err
    assert pd.read_csv(out)["model_caveat"].isna().all()
