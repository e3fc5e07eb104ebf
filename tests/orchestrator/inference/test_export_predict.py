"""Export a trained ensemble of a real (tiny) run, then predict with it: a real photograph with the
SSD, a folder with faceless and corrupt files, a video, Grad-CAM sheets, batch-size invariance."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from hostile_files import damage_middle, fifo, non_utf8, tree_state, write_big_png, write_png, write_video

from partfer.cli.export import add_export_parser
from partfer.cli.predict import add_predict_parser
from partfer.data_prep.detectors import load_detector
from partfer.data_prep.image_io import load_grayscale
from partfer.data_prep.preprocess import apply_clahe, crop_face
from partfer.data_prep.prepared import read_manifest
from partfer.data_prep.settings import PrepSettings
from partfer.models.subnet import SubNetwork
from partfer.orchestrator.training.augment import normalise_pixels
from partfer.orchestrator.inference.export import ExportError, RunDirError, export_model
from partfer.orchestrator.storage.model_dir import ModelDirError, ModelFormatError, load_model_dir
from partfer.orchestrator.inference.predict import (
    NO_FACE, OK, ERROR, PredictError, Predictor, write_predictions,
)
from partfer.orchestrator.records import RunPlan, main_models
from partfer.orchestrator.training.tensors import resize_uint8

PARTS = ["eyebrows", "eyes", "nose", "mouth", "jaw"]
IMAGE_SIZE = 32


# every test but one uses the module's trained run
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, shared_ray) -> Path:
    """A tiny EL run (3 subjects -> 3 folds, one epoch per stage) trained through the real code path."""
    from partfer.orchestrator.config import load_config
    from partfer.orchestrator.execution.runner import RunRequest, run

    cfg = load_config("demo", {
        "image_size": IMAGE_SIZE, "networks": ["el"],
        "datasets.jaffe.epochs": {"baseline": 1, "landmark": 1, "head": 1, "finetune": 1},
        "synthetic": {"jaffe": {"subjects": 3, "per_class": 2, "seed": 0, "size": 96}},
        "storage": str(tmp_path_factory.mktemp("store")), "executor": "inline", "device": "cpu"})
    run_dir = run(RunRequest(config=cfg), log=lambda text: None)
    return Path(run_dir)


@pytest.fixture(scope="module")
def plan(trained_run) -> RunPlan:
    return RunPlan.from_json((trained_run / "plan.json").read_text())


@pytest.fixture(scope="module")
def model_dir(trained_run, tmp_path_factory) -> Path:
    notes = []
    result = export_model(trained_run, "jaffe", "el", tmp_path_factory.mktemp("export") / "el", log=notes.append)
    assert notes and "no fold given: exporting fold 0 of 3" in notes[0]
    return result.out


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="module")
def ssd_predictor(model_dir) -> Predictor:
    return Predictor.from_dir(model_dir, device="cpu", detector="ssd")


def _faces_of_run(plan: RunPlan, n: int) -> list[Path]:
    """Some of the run's own synthetic face images (drawn faces that fill the image)."""
    root = Path(read_manifest(plan.datasets["jaffe"].prepared)["root"])
    return sorted(root.glob("*.tiff"))[:n]


def _cli(add_parser, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="partfer")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _prob_block(df: pd.DataFrame, name: str, classes: list[str]) -> np.ndarray:
    """The ensemble's (name "ensemble": p_<class>) or a member's (p_<member>_<class>) probabilities."""
    prefix = "p_" if name == "ensemble" else f"p_{name}_"
    return df[[f"{prefix}{c}" for c in classes]].to_numpy(dtype=np.float64)


# ---- export ---------------------------------------------------------------------------------

def test_export_writes_a_self_contained_model_directory(model_dir, trained_run, plan):
    spec = json.loads((model_dir / "model.json").read_text())
    storage = trained_run.parent.parent
    assert spec["dataset"] == "jaffe" and spec["network"] == "el" and spec["folds"] == [0]
    assert spec["classes"] == plan.datasets["jaffe"].classes
    assert [m["name"] for m in spec["members"]] == PARTS
    assert [m["region"] for m in spec["members"]] == PARTS
    assert all(m["fold"] == 0 and m["stage"] == "finetune" for m in spec["members"])
    assert spec["image_size"] == IMAGE_SIZE
    assert spec["architecture"]["bn_momentum"] == 0.1                 # demo.yaml's model section
    assert spec["model_config"]["widths"] == [16, 32, 64, 128]
    manifest = read_manifest(plan.datasets["jaffe"].prepared)
    assert spec["preprocessing"] == manifest["settings"]
    assert spec["preprocessing"]["detector"] == "none" and spec["preprocessing"]["crop_size"] == 160
    assert spec["run"]["run_id"] == plan.run_id and spec["run"]["shrunk"] is True
    assert spec["run"]["synthetic"] == ["jaffe"] and "synthetic data (jaffe)" in spec["run"]["shrunk_reasons"]
    assert "sum of the members' softmax" in spec["ensemble"]

    weights = torch.load(model_dir / "weights.pt", map_location="cpu", weights_only=True)
    assert not any(".landmark_head." in k for k in weights)
    # the export takes the main selection's models (the run also keeps its no-peeking twin's)
    records = {r.member: r for r in main_models(plan) if r.network == "el" and r.fold == 0}
    for part in PARTS:
        checkpoint = torch.load(storage / records[part].dir / "checkpoint.pt", weights_only=True)
        assert any(k.startswith("landmark_head.") for k in checkpoint)  # it had one; the export drops it
        for key, value in checkpoint.items():
            if not key.startswith("landmark_head."):
                assert torch.equal(weights[f"{part}.{key}"], value), (part, key)
    spec_obj, nets = load_model_dir(model_dir)
    assert len(nets) == 5 and all(isinstance(n, SubNetwork) and not n.training for n in nets)


def test_export_of_every_fold_is_one_ensemble_of_all_members(trained_run, tmp_path, astronaut_png):
    out = export_model(trained_run, "jaffe", "el", tmp_path / "all", all_folds=True).out
    spec = json.loads((out / "model.json").read_text())
    assert spec["folds"] == [0, 1, 2]
    assert [m["name"] for m in spec["members"]] == [f"{p}_f{k}" for k in (0, 1, 2) for p in PARTS]
    predictor = Predictor.from_dir(out, device="cpu", detector="ssd")
    df = predictor.predict([astronaut_png], details=True)
    members = np.stack([_prob_block(df, m, predictor.classes) for m in predictor.members], 1)
    np.testing.assert_allclose(_prob_block(df, "ensemble", predictor.classes), members.mean(1), atol=1e-6)


def test_export_refuses_what_the_run_cannot_give(trained_run, tmp_path, capsys):
    with pytest.raises(ExportError, match="no data set 'ckplus'"):
        export_model(trained_run, "ckplus", "el", tmp_path / "m")
    with pytest.raises(ExportError, match=r"folds \[0, 1, 2\], not 7"):
        export_model(trained_run, "jaffe", "el", tmp_path / "m", fold=7)
    with pytest.raises(ExportError, match="trained no baseline on jaffe"):
        export_model(trained_run, "jaffe", "baseline", tmp_path / "m")
    with pytest.raises(RunDirError, match="does not exist"):
        export_model(tmp_path / "nowhere", "jaffe", "el", tmp_path / "m")
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "thesis.tex").write_text("keep me")
    with pytest.raises(ModelFormatError, match="not a partfer model directory"):
        export_model(trained_run, "jaffe", "el", tmp_path / "occupied")
    assert (tmp_path / "occupied" / "thesis.tex").read_text() == "keep me"
    assert not (tmp_path / "m").exists()
    code = _cli(add_export_parser, ["export", str(trained_run), "--dataset", "jaffe", "--network", "el",
                                    "--fold", "9", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("partfer export: error:") and len(err.strip().splitlines()) == 1


def test_export_from_a_moved_store(trained_run, tmp_path, capsys):
    """The store copied elsewhere (plan.json still names the old root) exports from its new place."""
    old = trained_run.parent.parent
    new = tmp_path / "moved"
    for part in ("models", "prepared"):
        shutil.copytree(old / part, new / part)
    shutil.copytree(trained_run, new / "runs" / trained_run.name)
    code = _cli(add_export_parser, ["export", str(new / "runs" / trained_run.name), "--dataset", "jaffe",
                                    "--network", "el", "--fold", "2", "--out", str(tmp_path / "m2")])
    assert code == 0, capsys.readouterr().err
    spec = json.loads((tmp_path / "m2" / "model.json").read_text())
    assert spec["folds"] == [2] and spec["run"]["storage"] == str(new)
    assert spec["preprocessing_source"].startswith(str(new))
    # exporting again replaces the model directory in place
    assert _cli(add_export_parser, ["export", str(new / "runs" / trained_run.name), "--dataset", "jaffe",
                                    "--network", "el", "--fold", "1", "--out", str(tmp_path / "m2")]) == 0
    assert json.loads((tmp_path / "m2" / "model.json").read_text())["folds"] == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m2", "moved"]   # no temporary leftovers
    # a model whose stage never finished (no meta.json) cannot be exported
    mouth = next(r for r in RunPlan.from_json((trained_run / "plan.json").read_text()).models
                 if r.member == "mouth" and r.fold == 0)
    (new / mouth.dir / "meta.json").unlink()
    with pytest.raises(ExportError, match="mouth fold 0 is not finished"):
        export_model(new / "runs" / trained_run.name, "jaffe", "el", tmp_path / "m3", fold=0)


# ---- predict ----------------------------------------------------------------------------------

def test_predict_a_real_photograph_with_the_ssd(ssd_predictor, model_dir, astronaut_png):
    df = ssd_predictor.predict([astronaut_png], details=True)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["status"] == OK and row["face"] == 0 and pd.isna(row["frame"]) and row["score"] > 0.9
    assert row["x"] < 200 < row["x"] + row["w"] and row["y"] < 100 < row["y"] + row["h"]   # around the face
    classes = ssd_predictor.classes
    for name in ssd_predictor.members + ["ensemble"]:
        assert _prob_block(df, name, classes).sum() == pytest.approx(1.0, abs=1e-5), name
    ensemble = _prob_block(df, "ensemble", classes)[0]
    assert row["label"] == classes[int(ensemble.argmax())]

    # the same numbers by an independent path: data_prep's preprocessing and each plain SubNetwork
    settings = PrepSettings.from_dict({**ssd_predictor.spec.preprocessing, "detector": "ssd"})
    gray = apply_clahe(load_grayscale(astronaut_png), settings.clahe_clip, settings.clahe_tile)
    crop = crop_face(gray, load_detector("ssd", settings).detect(gray), settings).crop
    x = normalise_pixels(resize_uint8(crop[None], IMAGE_SIZE)).unsqueeze(1)
    _, nets = load_model_dir(model_dir)
    with torch.no_grad():
        plain = np.stack([torch.softmax(net.classify(x), -1)[0].numpy() for net in nets])
    for name, probs in zip(ssd_predictor.members, plain):
        np.testing.assert_allclose(_prob_block(df, name, classes)[0], probs, atol=1e-5)
    np.testing.assert_allclose(ensemble, plain.mean(0), atol=1e-5)

    # an image given as an RGB array is the same face
    from skimage import data
    again = ssd_predictor.predict(data.astronaut(), details=True)
    assert again["input"].tolist() == ["array:0"]
    np.testing.assert_allclose(_prob_block(again, "ensemble", classes), _prob_block(df, "ensemble", classes),
                               atol=1e-5)


def test_cli_on_a_folder_reports_faceless_and_corrupt_files(model_dir, astronaut_png, tmp_path, capsys):
    folder = tmp_path / "inbox"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(astronaut_png, folder / "sub" / "astronaut.png")
    cv2.imwrite(str(folder / "blank.png"), np.full((120, 160), 128, np.uint8))
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (folder / "notes.txt").write_text("not a picture")
    out = tmp_path / "preds.csv"
    code = _cli(add_predict_parser, ["predict", "--model", str(model_dir), str(folder), "--out", str(out),
                                     "--detector", "ssd", "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "1 faces, 1 frames without a face, 2 errors" in err
    df = pd.read_csv(out)
    by_name = {Path(p).name: r for p, r in zip(df["input"], df.to_dict("records"))}
    assert list(by_name) == ["blank.png", "corrupt.png", "notes.txt", "astronaut.png"]   # sorted walk
    assert by_name["blank.png"]["status"] == NO_FACE and "no face" in by_name["blank.png"]["message"]
    assert by_name["corrupt.png"]["status"] == ERROR and "unreadable image" in by_name["corrupt.png"]["message"]
    assert by_name["notes.txt"]["status"] == ERROR and "not an image or video" in by_name["notes.txt"]["message"]
    face = by_name["astronaut.png"]
    assert face["status"] == OK and face["label"] in json.loads((model_dir / "model.json").read_text())["classes"]
    assert np.isnan(by_name["blank.png"]["p_anger"]) and np.isnan(by_name["blank.png"]["confidence"])
    assert not list(tmp_path.glob(".preds.csv.tmp-*"))


def test_cli_on_hostile_inputs_writes_a_row_for_each_and_leaves_them_as_they_were(model_dir, plan, tmp_path):
    """A name that is not UTF-8, a damaged video, a FIFO, a PNG too large: `partfer predict` in a
    child process (OpenCV crashed on such a name), its CSV strict UTF-8, the names' bytes in input_hex."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    face = load_grayscale(_faces_of_run(plan, 1)[0])
    write_png(non_utf8(folder, b"caf\xe9_\xff.png"), face)
    damage_middle(write_video(folder / "clip.mp4", 20))
    write_big_png(folder / "huge.png", 10_000, 6_000)
    out = tmp_path / "preds.csv"
    with fifo(folder / "pipe.png"):
        before = tree_state(folder)
        run = subprocess.run([sys.executable, "-m", "partfer", "predict", "--model", str(model_dir), str(folder),
                              "--out", str(out), "--device", "cpu", "--no-progress"],
                             capture_output=True, text=True, timeout=300)
        assert tree_state(folder) == before
    assert run.returncode == 0, run.stderr[-3000:]
    df = pd.read_csv(out, encoding="utf-8")
    names = {Path(p).name for p in df["input"]}
    assert names == {"caf\\xe9_\\xff.png", "clip.mp4", "huge.png", "pipe.png"}
    cafe = df[df["input"].str.endswith("caf\\xe9_\\xff.png")]
    assert cafe["status"].tolist() == [OK]
    assert bytes.fromhex(cafe["input_hex"].iloc[0]) == bytes(non_utf8(folder, b"caf\xe9_\xff.png"))
    assert df.loc[~df["input"].str.contains("caf"), "input_hex"].isna().all()       # UTF-8 names: empty
    clip = df[df["input"] == str(folder / "clip.mp4")]
    assert clip["frame"].tolist() == list(range(20))                   # every declared frame has its row
    lost = clip[clip["status"] == ERROR]
    assert len(lost) > 0 and lost["message"].str.contains("could not be decoded: the stream ended").all()
    assert df.loc[df["input"] == str(folder / "huge.png"), "message"].tolist() == [
        "image too large: huge.png is 10000x6000 (60.0 megapixels; the cap is 50)"]
    assert df.loc[df["input"] == str(folder / "pipe.png"), "message"].tolist() == [
        "not a regular file: pipe.png is a FIFO (named pipe)"]
    n_errors = int((df["status"] == ERROR).sum())
    assert n_errors == len(lost) + 2
    assert f"{len(df) - n_errors} faces, 0 frames without a face, {n_errors} errors" in run.stderr
    predictor = Predictor.from_dir(model_dir, device="cpu")                 # and to Parquet, in process
    parquet = tmp_path / "preds.parquet"
    write_predictions(predictor.iter_predict([non_utf8(folder, b"caf\xe9_\xff.png")]), parquet, predictor.schema())
    row = pd.read_parquet(parquet).iloc[0]
    assert (row["input"], row["input_hex"], row["status"]) == (cafe["input"].iloc[0], cafe["input_hex"].iloc[0], OK)


def test_cli_errors_are_one_line(tmp_path, model_dir, astronaut_png, capsys):
    assert _cli(add_predict_parser, ["predict", "--model", str(tmp_path / "none"), str(astronaut_png)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("partfer predict: error:") and len(err.strip().splitlines()) == 1
    with pytest.raises(ModelDirError, match="does not exist"):
        Predictor.from_dir(tmp_path / "none")
    assert _cli(add_predict_parser, ["predict", "--model", str(model_dir), str(astronaut_png),
                                     "--out", str(tmp_path / "x.json"), "--no-progress"]) == 2
    assert "--out must end in .csv or .parquet" in capsys.readouterr().err


def _write_video(path: Path, faces: list[Path], n_frames: int) -> None:
    size = 96
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (size, size))
    assert writer.isOpened()
    for i in range(n_frames):
        gray = cv2.resize(load_grayscale(faces[i % len(faces)]), (size, size))
        writer.write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    writer.release()


def test_video_every_third_frame_with_gradcam_to_parquet(model_dir, plan, tmp_path, capsys):
    video = tmp_path / "clip.avi"
    _write_video(video, _faces_of_run(plan, 4), 10)
    (tmp_path / "broken.avi").write_bytes(b"RIFF0000AVI LIST nothing here")
    out, sheets = tmp_path / "preds.parquet", tmp_path / "cams"
    code = _cli(add_predict_parser, ["predict", "--model", str(model_dir), str(video), str(tmp_path / "broken.avi"),
                                     "--every", "3", "--out", str(out), "--gradcam", str(sheets),
                                     "--batch-size", "2", "--device", "cpu", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    df = pd.read_parquet(out)
    frames = df[df["input"] == str(video)]
    assert frames["frame"].tolist() == [0, 3, 6, 9]                    # detector none: one face a frame
    np.testing.assert_allclose(frames["time_s"].to_numpy(float), [0.0, 0.3, 0.6, 0.9])   # 10 frames a second
    assert (frames["status"] == OK).all() and (frames["face"] == 0).all()
    broken = df[df["input"] == str(tmp_path / "broken.avi")]
    assert len(broken) == 1 and broken.iloc[0]["status"] == ERROR and "video" in broken.iloc[0]["message"]
    written = sorted(sheets.glob("*.png"))
    assert [p.name for p in written] == [f"00000_clip_frame{f:06d}_face0.png" for f in (0, 3, 6, 9)]
    assert frames["gradcam"].tolist() == [str(p) for p in written]
    sheet = cv2.imread(str(written[0]))
    assert sheet is not None and sheet.shape[1] == 7 * 160               # face, 5 members, union
    assert sheet.std() > 10                                              # a picture, not a blank


def test_long_inputs_stream_in_chunks(model_dir, plan, tmp_path):
    video = tmp_path / "long.avi"
    _write_video(video, _faces_of_run(plan, 3), 12)
    predictor = Predictor.from_dir(model_dir, device="cpu")
    chunks = predictor.iter_predict([video], batch_size=4)
    first = next(chunks)                                                 # rows come before the end
    assert first["frame"].tolist() == [0, 1, 2, 3]
    rest = list(chunks)
    assert [len(c) for c in rest] == [4, 4]


def test_predictions_do_not_depend_on_the_batch_size(model_dir, plan, astronaut_png):
    inputs = [*_faces_of_run(plan, 9), astronaut_png]
    predictor = Predictor.from_dir(model_dir, device="cpu")             # detector none: one face each
    one = predictor.predict(inputs, batch_size=1, details=True)
    seven = predictor.predict(inputs, batch_size=7, details=True)
    assert len(one) == len(seven) == 10 and (one["status"] == OK).all()
    columns = predictor.prob_columns(details=True) + ["confidence"]
    np.testing.assert_allclose(one[columns].to_numpy(), seven[columns].to_numpy(), atol=1e-5, rtol=0)
    pd.testing.assert_frame_equal(one.drop(columns=columns), seven.drop(columns=columns))


def test_gradcam_maps_of_the_trained_members(model_dir, plan):
    predictor = Predictor.from_dir(model_dir, device="cpu")
    crops = np.stack([cv2.resize(load_grayscale(p), (160, 160)) for p in _faces_of_run(plan, 4)])
    predicted = predictor.probabilities(crops).argmax(2)
    maps, merged = predictor.gradcam_maps(crops, predicted)
    assert maps.shape == (4, 5, IMAGE_SIZE, IMAGE_SIZE) and merged.shape == (4, IMAGE_SIZE, IMAGE_SIZE)
    assert maps.min() >= 0 and maps.max() <= 1
    assert np.all(maps.reshape(4, 5, -1).std(-1) > 0.01)                # every member's map has structure
    np.testing.assert_array_equal(merged, maps.max(1))


# ---- hostile or odd inputs ----------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["/etc", "../../outside", "models/../../../outside"])
def test_export_refuses_a_plan_whose_model_folder_is_outside_the_store(trained_run, tmp_path, bad):
    run_dir = tmp_path / "store" / "runs" / trained_run.name
    shutil.copytree(trained_run, run_dir)
    raw = json.loads((run_dir / "plan.json").read_text())
    for record in raw["models"]:
        record["dir"] = bad
    (run_dir / "plan.json").write_text(json.dumps(raw))
    with pytest.raises(ExportError, match="not a relative path inside its folder"):
        export_model(run_dir, "jaffe", "el", tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_predict_without_a_detector_says_a_grey_image_was_taken_as_a_face(model_dir, tmp_path, capsys):
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((120, 160), 128, np.uint8))
    out = tmp_path / "preds.csv"
    code = _cli(add_predict_parser, ["predict", "--model", str(model_dir), str(grey), "--out", str(out),
                                     "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "no face detector" in err and "--detector ssd" in err
    row = pd.read_csv(out).iloc[0]
    assert row["status"] == OK and pd.isna(row["message"])          # said once on stderr, not on each row


# ---- the short table, the Python call, drawn answers, nothing to read, a model at a URI ----------------

SHORT_COLUMNS = ["input", "input_hex", "frame", "time_s", "face", "status", "message", "model_caveat",
                 "x", "y", "w", "h", "label", "confidence"]


def test_default_table_is_short_and_details_add_the_members(model_dir, astronaut_png, tmp_path, capsys):
    short, full = tmp_path / "short.csv", tmp_path / "full.csv"
    common = ["predict", "--model", str(model_dir), str(astronaut_png), "--detector", "ssd", "--device", "cpu",
              "--no-progress"]
    assert _cli(add_predict_parser, common + ["--out", str(short)]) == 0, capsys.readouterr().err
    assert _cli(add_predict_parser, common + ["--out", str(full), "--details"]) == 0, capsys.readouterr().err
    classes = json.loads((model_dir / "model.json").read_text())["classes"]
    df = pd.read_csv(short)
    assert list(df.columns) == SHORT_COLUMNS + [f"p_{c}" for c in classes]
    row = df.iloc[0]
    probs = _prob_block(df, "ensemble", classes)[0]
    assert row["label"] == classes[int(probs.argmax())] and row["confidence"] == pytest.approx(probs.max(), abs=1e-6)
    wide = pd.read_csv(full)
    members = [f"p_{p}_{c}" for p in PARTS for c in classes]
    landmarks = [f"lm{i:02d}_{a}" for i in range(68) for a in ("x", "y")]
    assert list(wide.columns) == list(df.columns) + ["score"] + landmarks + members
    pd.testing.assert_frame_equal(wide[df.columns], df)
    np.testing.assert_allclose(np.stack([_prob_block(wide, p, classes) for p in PARTS], 1).mean(1), [probs],
                               atol=1e-6)


def test_predict_image_gives_one_dict_per_face(ssd_predictor):
    from skimage import data
    faces = ssd_predictor.predict_image(data.astronaut())
    assert len(faces) == 1
    face = faces[0]
    x, y, w, h = face["box"]
    assert x < 200 < x + w and y < 100 < y + h and face["score"] > 0.9 and face["face"] == 0
    probs = face["probabilities"]
    assert list(probs) == ssd_predictor.classes and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert face["label"] == max(probs, key=probs.get) and face["confidence"] == pytest.approx(max(probs.values()))
    assert list(face["members"]) == PARTS
    for c in ssd_predictor.classes:
        assert np.mean([face["members"][p][c] for p in PARTS]) == pytest.approx(probs[c], abs=1e-5)
    # the same face from the BGR array equals the RGB one
    bgr = ssd_predictor.predict_image(data.astronaut()[:, :, ::-1].copy(), channel_order="bgr")
    assert bgr[0]["label"] == face["label"] and bgr[0]["confidence"] == pytest.approx(face["confidence"], abs=1e-5)
    assert ssd_predictor.predict_image(np.full((120, 160, 3), 128, np.uint8)) == []      # no face: no dict
    with pytest.raises(PredictError, match="not an image"):
        ssd_predictor.predict_image(np.zeros((4, 4, 7), np.uint8))


def test_annotate_draws_boxes_and_labels_on_images_and_videos(model_dir, plan, astronaut_png, tmp_path, capsys):
    drawn = tmp_path / "drawn"
    out = tmp_path / "p.csv"
    assert _cli(add_predict_parser, ["predict", "--model", str(model_dir), str(astronaut_png), "--out", str(out),
                                     "--detector", "ssd", "--annotate", str(drawn), "--device", "cpu",
                                     "--no-progress"]) == 0, capsys.readouterr().err
    row = pd.read_csv(out).iloc[0]
    picture = cv2.imread(str(drawn / "astronaut.png"))
    original = cv2.imread(str(astronaut_png))
    assert picture is not None and picture.shape == original.shape
    changed = np.abs(picture.astype(int) - original.astype(int)).sum(2) > 0
    x0, y0 = int(row["x"]), int(row["y"])
    x1, y1 = x0 + int(row["w"]), y0 + int(row["h"])
    assert changed[(y0 + y1) // 2, x0 - 2:x0 + 3].any() and changed[(y0 + y1) // 2, x1 - 2:x1 + 3].any()  # box sides
    assert changed[max(0, y0 - 30):y0, x0:x1].mean() > 0.2                   # the caption above the box
    assert not changed[y1 + 20:, :].any()                                    # nothing else is touched

    video = tmp_path / "clip.avi"
    _write_video(video, _faces_of_run(plan, 4), 9)
    assert _cli(add_predict_parser, ["predict", "--model", str(model_dir), str(video), str(astronaut_png),
                                     "--every", "2", "--annotate", str(drawn), "--out", str(tmp_path / "v.csv"),
                                     "--device", "cpu", "--no-progress"]) == 0, capsys.readouterr().err
    written = cv2.VideoCapture(str(drawn / "clip.mp4"))
    assert written.isOpened()
    assert written.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)              # 10 fps, every 2nd frame
    shown = []
    while True:
        ok, image = written.read()
        if not ok:
            break
        shown.append(image)
    written.release()
    assert len(shown) == 5 and shown[0].shape == (96, 96, 3)
    source = cv2.VideoCapture(str(video))
    originals = [source.read()[1] for _ in range(9)][::2]
    source.release()
    for frame, original in zip(shown, originals):
        diff = np.abs(frame.astype(int) - original.astype(int)).mean(2)
        # detector none: the whole frame is the box, drawn along its border; the face stays as it was
        assert diff[30:70, :2].mean() > 15 and diff[35:60, 35:60].mean() < 8
    # the second run drew the photograph again beside the first drawing, never over it
    assert sorted(p.name for p in drawn.iterdir()) == ["astronaut.annotated.png", "astronaut.png", "clip.mp4"]


def test_no_readable_input_warns_and_exits_1(model_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "p.csv"
    code = _cli(add_predict_parser, ["predict", "--model", str(model_dir), str(empty), "--out", str(out),
                                     "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "warning: no input could be read" in err
    df = pd.read_csv(out)
    assert len(df) == 1 and df.iloc[0]["status"] == ERROR and "empty folder" in df.iloc[0]["message"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"not a jpeg")
    assert _cli(add_predict_parser, ["predict", "--model", str(model_dir), str(tmp_path / "bad"),
                                     str(tmp_path / "missing.png"), "--out", str(out), "--device", "cpu",
                                     "--no-progress"]) == 1
    assert "2 errors" in capsys.readouterr().err


def test_model_directory_at_a_uri(model_dir, astronaut_png, tmp_path, monkeypatch):
    monkeypatch.setenv("PARTFER_CACHE", str(tmp_path / "cache"))
    uri = "file://" + str(model_dir)
    remote = Predictor.from_dir(uri, device="cpu").predict([astronaut_png], details=True)
    local = Predictor.from_dir(model_dir, device="cpu").predict([astronaut_png], details=True)
    pd.testing.assert_frame_equal(remote, local)
    assert (tmp_path / "cache" / "file").is_dir()                              # read from this machine's copy
    with pytest.raises(ModelDirError, match="no model.json"):
        Predictor.from_dir("file://" + str(tmp_path), device="cpu")


def test_an_export_the_disk_refuses_is_one_line_naming_the_folder_and_leaves_nothing(trained_run, tmp_path):
    import os
    import resource
    import subprocess
    import sys

    def small_files() -> None:          # the kernel refuses (EFBIG) the write() that would pass 64 KiB
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    out = tmp_path / "models" / "el"
    done = subprocess.run([sys.executable, "-m", "partfer", "export", str(trained_run), "--dataset", "jaffe",
                           "--network", "el", "--out", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, preexec_fn=small_files)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"partfer: error: {out}: File too large\n"
    assert not out.exists() and list((tmp_path / "models").iterdir()) == []
