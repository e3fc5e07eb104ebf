"""Builds real run directories for the results tests: plan.json, predictions (own and
cross-data-set files), history.csv, and optionally landmarks.parquet of both transfer stages,
prepared face crops and the analysis/ files (complexity.json, gradcam_<dataset>.npz).

Every member's softmax vector is built from a per-sample *scenario*, so each expected
accuracy is known by hand. Members 0-2 of a network form group 1, members 3-4 group 2:

  scenario  group 1 (3 members)     group 2 (2 members)    sum-of-softmax  majority vote
  A         wrong, unsure 0.40      right, sure 0.90        right           wrong
  B         right, unsure 0.40      wrong, sure 0.90        wrong           right
  C         right, sure 0.90        right, sure 0.90        right           right
  D         wrong, sure 0.90        wrong, sure 0.90        wrong           wrong
  E         right, 0.60             wrong, unsure 0.45      right           right
  x         (a label outside the model's classes: contempt for SFEW models)

Landmarks: each transfer model's "before" points miss the truth by 0.01 * (fold + 1) on every
coordinate; "after" by that times AFTER_FACTOR[region]. So the mean over CK+'s folds 0-2 is
0.02 before and 0.02 * factor after, whatever the fold sizes.
"""
from __future__ import annotations

from pathlib import Path

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from partfer.data_prep.ibug68 import FULL_FACE, region_indices
from partfer.data_prep.schema import SCHEMA, SUCCESS_MARKER
from partfer.orchestrator.networks import gradcam_systems
from partfer.orchestrator.records import PREDICTION_SCHEMA, DatasetInfo, ModelRecord, RunPlan

GRADCAM_SYSTEMS = tuple(gradcam_systems())          # Fig. 11's columns

CK_CLASSES = ["anger", "contempt", "happiness", "surprise"]
SFEW_CLASSES = ["anger", "happiness", "surprise"]
PARTS = ["eyebrows", "eyes", "nose", "mouth", "jaw"]
MEMBERS = {"baseline": [f"m{i}" for i in range(5)], "ftl": [f"m{i}" for i in range(5)], "el": PARTS}

# 12 CK+ samples (labels cycle through the 4 classes: contempt at 1, 5, 9) in 3 folds of 4, 5, 3.
CK_SAMPLES = [(f"ck{i:02d}", CK_CLASSES[i % 4]) for i in range(12)]
CK_FOLDS = {0: range(0, 4), 1: range(4, 9), 2: range(9, 12)}
# 6 SFEW validation samples, one holdout fold.
SFEW_SAMPLES = [(f"sf{i}", SFEW_CLASSES[i % 3]) for i in range(6)]
# 7 JAFFE samples (only tested on, by SFEW models): 7 classes, so one is outside SFEW's.
JAFFE_CLASSES = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
JAFFE_SAMPLES = [("jf0", "anger"), ("jf1", "happiness"), ("jf2", "surprise"), ("jf3", "anger"),
                 ("jf4", "happiness"), ("jf5", "surprise"), ("jf6", "fear")]
CROP = 48                               # side of the test crops written as prepared data
AFTER_FACTOR = {"eyebrows": 1.2, "eyes": 0.8, "nose": 1.5, "mouth": 0.5, "jaw": 1.02,
                FULL_FACE: 0.9}

# (trained on, tested on, network) -> scenario per sample, in sample order.
SCENARIOS = {
    ("ckplus", "ckplus", "el"): "AECD" + "ABECD" + "BBE",
    ("ckplus", "ckplus", "baseline"): "BDCC" + "CCCCC" + "DBD",
    ("ckplus", "ckplus", "ftl"): "A" * 12,
    ("sfew", "sfew", "el"): "AABCDE",
    ("sfew", "sfew", "baseline"): "CDDDDD",
    ("sfew", "sfew", "ftl"): "CCCDDD",
    ("sfew", "ckplus", "el"): "DxDAAxAEBxCC",
    ("sfew", "ckplus", "baseline"): "CxCCCxCCCxCC",
    ("sfew", "ckplus", "ftl"): "DxDDDxDDDxDD",
    ("sfew", "jaffe", "el"): "AACDBCx",
    ("sfew", "jaffe", "baseline"): "CCCCCDx",
    ("sfew", "jaffe", "ftl"): "DDDDDDx",
}

# scenario -> ((group-1 member right?, top p, second p), (group-2 ...))
_SPECS = {
    "A": ((False, 0.40, 0.35), (True, 0.90, 0.05)),
    "B": ((True, 0.40, 0.35), (False, 0.90, 0.05)),
    "C": ((True, 0.90, 0.05), (True, 0.90, 0.05)),
    "D": ((False, 0.90, 0.05), (False, 0.90, 0.05)),
    "E": ((True, 0.60, 0.30), (False, 0.45, 0.40)),
}

SHRUNK_SETTINGS = {
    "image_size": 32, "epochs_scale": 0.01, "seed": 7, "device": "cpu", "executor": "inline",
    "shrunk": True, "synthetic": True, "detector": "none", "annotator": "dlib-ert68",
    "epochs": {"baseline": 4, "finetune": 3},
}
PAPER_SETTINGS = {
    "image_size": 160, "epochs_scale": 1.0, "seed": 0, "device": "cuda", "executor": "ray",
    "shrunk": False, "synthetic": False, "detector": "ssd-res10", "annotator": "dlib-ert68",
}


def member_probs(classes: list[str], label: str, scenario: str, position: int) -> np.ndarray:
    """The softmax vector of member `position` (0-4) for one sample under `scenario`."""
    n = len(classes)
    if scenario == "x":
        assert label not in classes
        return np.array([0.5, 0.3, 0.2][:n], dtype=np.float32)
    right, top, second = _SPECS[scenario][0 if position < 3 else 1]
    true = classes.index(label)
    wrong = (true + 1) % n
    vec = np.full(n, (1.0 - top - second) / (n - 2))
    vec[true if right else wrong] = top
    vec[wrong if right else true] = second
    return vec.astype(np.float32)


def _samples(dataset: str):
    return {"ckplus": CK_SAMPLES, "sfew": SFEW_SAMPLES, "jaffe": JAFFE_SAMPLES}[dataset]


def _classes(dataset: str) -> list[str]:
    return {"ckplus": CK_CLASSES, "sfew": SFEW_CLASSES, "jaffe": JAFFE_CLASSES}[dataset]


def _prediction_rows(dataset: str, test: str, network: str, position: int, sample_fold: int,
                     indices) -> dict[str, list]:
    """Rows of one model on `test`'s samples `indices` (its own fold, or a cross-data-set test)."""
    classes = _classes(dataset)
    rows = {name: [] for name in PREDICTION_SCHEMA.names}
    scenarios = SCENARIOS[(dataset, test, network)]
    for i in indices:
        sid, label = _samples(test)[i]
        rows["sample_id"].append(sid)
        rows["eval_dataset"].append(test)
        rows["fold"].append(sample_fold)
        rows["label"].append(label)
        rows["probs"].append(member_probs(classes, label, scenarios[i], position).tolist())
    return rows


def _own_indices(dataset: str, fold: int):
    return CK_FOLDS[fold] if dataset == "ckplus" else range(len(_samples(dataset)))


def model_key(dataset: str, network: str, member: str, fold: int) -> str:
    return f"{dataset}-{network}-{member}-f{fold}"


def face_template() -> np.ndarray:
    """A plausible 68-point iBUG face in [0, 1] crop coordinates (for landmarks and figures)."""
    pts = np.zeros((68, 2))
    t = np.linspace(0.05 * np.pi, 0.95 * np.pi, 17)
    pts[0:17] = np.c_[0.5 - 0.38 * np.cos(t), 0.42 + 0.45 * np.sin(t)]
    brow = np.linspace(0, 1, 5)
    pts[17:22] = np.c_[0.2 + 0.22 * brow, 0.32 - 0.04 * np.sin(np.pi * brow)]
    pts[22:27] = np.c_[0.58 + 0.22 * brow, 0.32 - 0.04 * np.sin(np.pi * brow)]
    pts[27:31] = np.c_[np.full(4, 0.5), np.linspace(0.38, 0.56, 4)]
    pts[31:36] = np.c_[np.linspace(0.42, 0.58, 5), np.full(5, 0.6)]
    a = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    pts[36:42] = np.c_[0.33 + 0.06 * np.cos(a), 0.4 + 0.025 * np.sin(a)]
    pts[42:48] = np.c_[0.67 + 0.06 * np.cos(a), 0.4 + 0.025 * np.sin(a)]
    a = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    pts[48:60] = np.c_[0.5 + 0.12 * np.cos(a), 0.72 + 0.05 * np.sin(a)]
    a = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    pts[60:68] = np.c_[0.5 + 0.08 * np.cos(a), 0.72 + 0.02 * np.sin(a)]
    return pts


def true_points(index: int) -> np.ndarray:
    """Sample `index`'s true 68 points: the template shifted a little per sample."""
    return face_template() + 0.01 * np.array([index % 3 - 1, index % 2])


def _face_image(points: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:CROP, 0:CROP] / CROP
    image = np.where(((xx - 0.5) / 0.4) ** 2 + ((yy - 0.55) / 0.48) ** 2 < 1, 170, 50)
    for x, y in points:
        image[min(int(y * CROP), CROP - 1), min(int(x * CROP), CROP - 1)] = 20
    return image.astype(np.uint8)


def write_prepared(root: Path, dataset: str) -> Path:
    """A finished prepared directory (data_prep.schema) holding the data set's test samples."""
    folder = root / "prepared" / f"{dataset}-0123456789ab"
    (folder / "data").mkdir(parents=True)
    samples = _samples(dataset)
    images = [_face_image(true_points(i)).tobytes() for i in range(len(samples))]
    table = pa.table({
        "sample_id": [sid for sid, _ in samples], "source_path": [f"{sid}.png" for sid, _ in samples],
        "source_path_hex": [None] * len(samples),
        "dataset": [dataset] * len(samples), "split": ["all"] * len(samples),
        "subject": [f"s{i}" for i in range(len(samples))],
        "group": [f"g{i}" for i in range(len(samples))], "label": [lab for _, lab in samples],
        "image": images, "height": [CROP] * len(samples), "width": [CROP] * len(samples),
        "landmarks": [true_points(i).reshape(-1).astype(np.float32).tolist()
                      for i in range(len(samples))],
        "face_box": [[0.0, 0.0, 1.0, 1.0]] * len(samples),
        "detector": ["none"] * len(samples), "detector_score": [1.0] * len(samples),
        "annotator": ["synthetic"] * len(samples), "landmarks_ok": [True] * len(samples),
        "landmarks_error": [None] * len(samples), "face_fallback": [False] * len(samples),
        "face_source": ["none"] * len(samples)}, schema=SCHEMA)
    pq.write_table(table, folder / "data" / "part-0.parquet")
    (folder / "manifest.json").write_text(json.dumps({"name": dataset,
                                                      "classes": _classes(dataset)}))
    (folder / SUCCESS_MARKER).write_text("")
    return folder


def region_of(network: str, member: str) -> str:
    return FULL_FACE if network == "ftl" else member


def landmark_error(fold: int, region: str, stage: str) -> float:
    """The absolute error each coordinate of a stage's points carries (see the module docstring)."""
    before = 0.01 * (fold + 1)
    return before if stage == "landmark" else before * AFTER_FACTOR[region]


def write_landmarks(path: Path, dataset: str, fold: int, region: str, stage: str) -> None:
    """landmarks.parquet of one stage: the fold's test samples, points off by the known error."""
    flat = [2 * p + c for p in region_indices(region) for c in (0, 1)]
    error = landmark_error(fold, region, stage)
    signs = np.where(np.arange(len(flat)) % 2, 1.0, -1.0)
    ids, preds, truths = [], [], []
    for i in _own_indices(dataset, fold):
        truth = true_points(i).reshape(-1)[flat]
        ids.append(_samples(dataset)[i][0])
        truths.append(truth.astype(np.float32).tolist())
        preds.append((truth + signs * error).astype(np.float32).tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "sample_id": ids, "region": [region] * len(ids),
        "pred": pa.array(preds, pa.list_(pa.float32())),
        "truth": pa.array(truths, pa.list_(pa.float32()))}), path)


def write_gradcam(path: Path, dataset: str, systems=GRADCAM_SYSTEMS, k: int = 3) -> None:
    """A gradcam npz as the orchestrator writes it: K crops, a blob map and a prediction each."""
    samples = _samples(dataset)[:k]
    yy, xx = np.mgrid[0:CROP, 0:CROP] / CROP
    arrays = {"images": np.stack([_face_image(true_points(i)) for i in range(k)]),
              "sample_ids": np.array([sid for sid, _ in samples]),
              "labels": np.array([lab for _, lab in samples]),
              "classes": np.array(_classes(dataset))}
    for j, system in enumerate(systems):
        centre = face_template()[region_indices("face" if not system.startswith("el-")
                                                else system[3:])].mean(axis=0)
        blob = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / 0.01)
        arrays[f"map_{system}"] = np.stack([blob / blob.max()] * k).astype(np.float32)
        arrays[f"pred_{system}"] = np.array([(j + i) % len(_classes(dataset)) for i in range(k)])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def build_run(root: Path, *, settings: dict | None = None, datasets=("ckplus", "sfew"),
              cross=None, drop_models=(), drop_rows: dict | None = None, histories: bool = True,
              landmarks: bool = False, drop_landmarks=(), stage_dirs: bool = True,
              prepared: bool = False,
              complexity: dict | None = None, gradcam=(), run_id: str = "run1") -> Path:
    """Write a run under `root/store/runs/<run_id>/`; returns the run directory.

    cross: data sets the SFEW models are also tested on (default: CK+ when it is in the run),
    each in its own extra_predictions file. landmarks: both transfer stages' landmarks.parquet
    (drop_landmarks: (key, stage) pairs left unwritten); stage_dirs=False: records without
    stage_dirs, as plans written before the study existed. prepared: real prepared crops.
    complexity: written as analysis/complexity.json. gradcam: data sets given an npz.
    """
    storage = root / "store"
    run_dir = storage / "runs" / run_id
    run_dir.mkdir(parents=True)
    drop_rows = drop_rows or {}
    cross = tuple(cross) if cross is not None else (("ckplus",) if "ckplus" in datasets else ())
    drop_landmarks = set(drop_landmarks)

    def prep_path(name: str) -> str:
        return str(write_prepared(root, name)) if prepared else f"/prep/{name}"

    infos = {}
    if "ckplus" in datasets:
        infos["ckplus"] = DatasetInfo("ckplus", CK_CLASSES, "kfold", [0, 1, 2],
                                      prep_path("ckplus"), 12)
    if "sfew" in datasets:
        infos["sfew"] = DatasetInfo("sfew", SFEW_CLASSES, "holdout", [0], prep_path("sfew"), 6,
                                    eval_on=list(cross))
    for name in cross:
        if name not in infos:        # tested on only: described, never trained
            infos[name] = DatasetInfo(name, _classes(name), "kfold", [0], prep_path(name),
                                      len(_samples(name)))
    records = []
    trained = [d for d in ("ckplus", "sfew") if d in datasets]
    for dataset in trained:
        folds = [0, 1, 2] if dataset == "ckplus" else [0]
        for network, members in MEMBERS.items():
            for position, member in enumerate(members):
                for fold in folds:
                    key = model_key(dataset, network, member, fold)
                    stage = "baseline" if network == "baseline" else "finetune"
                    dirs, extra = {}, []
                    if network != "baseline" and stage_dirs:
                        dirs = {"landmark": f"models/{key}-landmark",
                                "head": f"models/{key}-head", "finetune": f"models/{key}"}
                    if dataset == "sfew":
                        extra = [f"models/{key}/cross_{name}.parquet" for name in cross]
                    records.append(ModelRecord(dataset, network, member, fold, stage, key,
                                               f"models/{key}", stage_dirs=dirs,
                                               extra_predictions=extra))
                    if landmarks and dirs:
                        for st in ("landmark", "finetune"):
                            if (key, st) not in drop_landmarks:
                                write_landmarks(storage / dirs[st] / "landmarks.parquet",
                                                dataset, fold, region_of(network, member), st)
                    if key in drop_models:
                        continue
                    model_dir = storage / "models" / key
                    model_dir.mkdir(parents=True, exist_ok=True)
                    rows = _prediction_rows(dataset, dataset, network, position,
                                            fold if dataset == "ckplus" else 0,
                                            _own_indices(dataset, fold))
                    if key in drop_rows:
                        keep = [i for i, s in enumerate(rows["sample_id"]) if s not in drop_rows[key]]
                        rows = {k: [v[i] for i in keep] for k, v in rows.items()}
                    pq.write_table(pa.table(rows, schema=PREDICTION_SCHEMA),
                                   model_dir / "predictions.parquet")
                    for name, path in zip(cross, extra):
                        cross_rows = _prediction_rows(dataset, name, network, position, -1,
                                                      range(len(_samples(name))))
                        pq.write_table(pa.table(cross_rows, schema=PREDICTION_SCHEMA),
                                       storage / path)
                    if histories and dataset == "ckplus":
                        epochs = np.arange(1, 4 + fold)
                        loss = 1.0 / (epochs + 1) + 0.01 * position + 0.03 * fold
                        lines = ["epoch,train_loss,val_loss,val_acc,lr,stopped"]
                        lines += [f"{e},{v + 0.1:.4f},{v:.4f},0.5,0.01,{int(e == epochs[-1])}"
                                  for e, v in zip(epochs, loss)]
                        (model_dir / "history.csv").write_text("\n".join(lines) + "\n")
    plan = RunPlan(run_id=run_id, storage=str(storage),
                   settings=dict(SHRUNK_SETTINGS if settings is None else settings),
                   datasets=infos, models=records)
    (run_dir / "plan.json").write_text(plan.to_json())
    (run_dir / "config.yaml").write_text("seed: 7\n")
    if complexity is not None:
        (run_dir / "analysis").mkdir(exist_ok=True)
        (run_dir / "analysis" / "complexity.json").write_text(json.dumps(complexity, indent=1))
    for name in gradcam:
        write_gradcam(run_dir / "analysis" / f"gradcam_{name}.npz", name)
    return run_dir
