"""An export replaces only a folder that is provably an earlier export, and a model directory never
makes partfer read a file outside it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from partfer.models.config import ArchConfig
from partfer.orchestrator.storage.model_dir import (ModelFormatError, ModelSpec, MemberSpec, build_member, load_model_dir,
                                    read_spec, write_model_dir)


def _spec() -> ModelSpec:
    member = MemberSpec(name="mouth", member="mouth", fold=0, region="mouth", stage="finetune",
                        key="k" * 16, source="models/x")
    return ModelSpec(dataset="jaffe", network="el", classes=["happy", "sad"], members=[member], folds=[0],
                     image_size=32, architecture=ArchConfig(widths=(4, 4, 4, 4)).to_dict(), preprocessing={})


def _states(spec: ModelSpec) -> dict:
    return {"mouth": build_member(spec).state_dict()}


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_tensorflow_js_model_folder_is_refused_and_kept(tmp_path):
    out = tmp_path / "web_model"
    out.mkdir()
    (out / "model.json").write_text(json.dumps({"format": "layers-model", "generatedBy": "keras",
                                                "weightsManifest": [{"paths": ["group1-shard1of1.bin"]}]}))
    (out / "group1-shard1of1.bin").write_bytes(b"\0" * 64)
    before = _tree(out)
    spec = _spec()
    with pytest.raises(ModelFormatError) as err:
        write_model_dir(out, spec, _states(spec))
    assert str(out) in str(err.value) and "partfer model description" in str(err.value)
    assert len(str(err.value).splitlines()) == 1
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web_model"]        # no temporary left


def test_an_export_with_a_users_files_in_it_is_refused_and_kept(tmp_path):
    out = tmp_path / "m"
    spec = _spec()
    write_model_dir(out, spec, _states(spec))
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ModelFormatError, match="notes.txt"):
        write_model_dir(out, spec, _states(spec))
    assert (out / "notes.txt").read_text() == "mine"


def test_an_earlier_export_or_an_empty_folder_is_replaced(tmp_path):
    spec = _spec()
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "m", tmp_path / "m", tmp_path / "empty"):
        write_model_dir(out, spec, _states(spec))
        assert sorted(p.name for p in out.iterdir()) == ["model.json", "weights.pt"]
    assert load_model_dir(tmp_path / "m")[0] == spec
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "m"]


@pytest.mark.parametrize("weights", ["/etc/passwd", "../weights.pt", "sub/../../weights.pt", "..", 7])
def test_weights_outside_the_model_directory_are_refused(tmp_path, weights):
    spec = _spec()
    out = write_model_dir(tmp_path / "m", spec, _states(spec))
    (tmp_path / "weights.pt").write_bytes((out / "weights.pt").read_bytes())   # would load if reached
    raw = json.loads((out / "model.json").read_text())
    raw["weights"] = weights
    (out / "model.json").write_text(json.dumps(raw))
    with pytest.raises(ModelFormatError, match="must be a file name inside the model directory"):
        read_spec(out)


def test_a_weights_link_out_of_the_model_directory_is_refused(tmp_path):
    spec = _spec()
    out = write_model_dir(tmp_path / "m", spec, _states(spec))
    (out / "weights.pt").rename(tmp_path / "elsewhere.pt")
    (out / "weights.pt").symlink_to(tmp_path / "elsewhere.pt")
    with pytest.raises(ModelFormatError, match="links outside the model directory"):
        load_model_dir(out)
