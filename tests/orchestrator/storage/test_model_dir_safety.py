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


def _with(out: Path, **changes) -> Path:
    """The model.json of `out` with fields changed (members[0].<key> for keys starting 'member_')."""
    raw = json.loads((out / "model.json").read_text())
    for key, value in changes.items():
        if key.startswith("member_"):
            raw["members"][0][key[len("member_"):]] = value
        elif key.startswith("arch_"):
            raw["architecture"][key[len("arch_"):]] = value
        else:
            raw[key] = value
    (out / "model.json").write_text(json.dumps(raw))
    return out / "model.json"


@pytest.mark.parametrize("changes,message", [
    ({"image_size": 60000}, r"image_size must be a whole number in \[24, 1024\], not 60000"),
    ({"image_size": 0}, r"image_size must be a whole number in \[24, 1024\], not 0"),
    ({"image_size": "32"}, r"image_size must be a whole number in \[24, 1024\], not '32'"),
    ({"image_size": 32.5}, r"image_size must be a whole number"),
    ({"arch_widths": [4, 4, 4, 100000]}, r"architecture widths must be 1 to 8 channel counts in \[1, 2048\]"),
    ({"arch_widths": ["a", 4]}, r"architecture widths must be a list of whole numbers, got \['a', 4\]"),
    ({"arch_head_hidden": 10**7}, r"architecture head_hidden must be in \[1, 4096\]"),
    ({"arch_depth": 3}, r"architecture has unknown settings \['depth'\]"),
    ({"classes": ["happy", "happy"]}, r"classes must be unique"),
    ({"classes": []}, r"classes must list 2 to 100 class names"),
    ({"network": "vgg"}, r"network must be one of baseline, ftl, el, not 'vgg'"),
    ({"preprocessing": {"crop_size": 60000}}, r"preprocessing crop_size must be in \[16, 1024\], got 60000"),
    ({"preprocessing": {"crop_size": "abc"}}, r"preprocessing crop_size must be a whole number, got 'abc'"),
    ({"member_fold": "x"}, r"members\[0\].fold must be a whole number >= -1, not 'x'"),
    ({"member_test_acc": 5}, r"members\[0\].test_acc must be null or a number in \[0, 1\], not 5"),
    ({"secret_sauce": 1}, r"model description has unknown fields \['secret_sauce'\]"),
])
def test_every_field_of_model_json_is_checked_and_refused_in_one_line(tmp_path, changes, message):
    spec = _spec()
    path = _with(write_model_dir(tmp_path / "m", spec, _states(spec)), **changes)
    with pytest.raises(ModelFormatError, match=f"{path}: {message}") as err:
        read_spec(tmp_path / "m")
    assert "\n" not in str(err.value)


def test_a_model_json_with_a_text_image_size_is_one_line_from_predict(tmp_path, capsys):
    import cv2
    import numpy as np

    from partfer.cli import main
    spec = ModelSpec(**{**_spec().__dict__, "preprocessing": {"detector": "none", "annotator": "dataset"}})
    path = _with(write_model_dir(tmp_path / "m", spec, _states(spec)), image_size="32")
    cv2.imwrite(str(tmp_path / "face.png"), np.full((40, 40, 3), 128, np.uint8))
    code = main(["predict", "--model", str(tmp_path / "m"), str(tmp_path / "face.png"), "--out",
                 str(tmp_path / "p.csv"), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err == f"partfer predict: error: {path}: image_size must be a whole number in [24, 1024], not '32'\n"
    assert not (tmp_path / "p.csv").exists()


def test_export_writes_no_model_json_that_predict_would_refuse(tmp_path):
    spec = ModelSpec(**{**_spec().__dict__, "classes": ["happy", "sad", "happy"]})
    with pytest.raises(ModelFormatError, match=r"model.json: classes must be unique"):
        write_model_dir(tmp_path / "m", spec, _states(spec))
    assert not (tmp_path / "m").exists()
