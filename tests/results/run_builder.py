"""Builds real run directories for the results tests: plan.json + predictions.parquet + history.csv.

Every member's softmax vector is built from a per-sample *scenario*, so each expected
accuracy is known by hand. Members 0-2 of a network form group 1, members 3-4 group 2:

  scenario  group 1 (3 members)     group 2 (2 members)    sum-of-softmax  majority vote
  A         wrong, unsure 0.40      right, sure 0.90        right           wrong
  B         right, unsure 0.40      wrong, sure 0.90        wrong           right
  C         right, sure 0.90        right, sure 0.90        right           right
  D         wrong, sure 0.90        wrong, sure 0.90        wrong           wrong
  E         right, 0.60             wrong, unsure 0.45      right           right
  x         (a label outside the model's classes: contempt for SFEW models)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.records import PREDICTION_SCHEMA, DatasetInfo, ModelRecord, RunPlan

CK_CLASSES = ["anger", "contempt", "happiness", "surprise"]
SFEW_CLASSES = ["anger", "happiness", "surprise"]
PARTS = ["eyebrows", "eyes", "nose", "mouth", "jaw"]
MEMBERS = {"baseline": [f"m{i}" for i in range(5)], "ftl": [f"m{i}" for i in range(5)], "el": PARTS}

# 12 CK+ samples (labels cycle through the 4 classes: contempt at 1, 5, 9) in 3 folds of 4, 5, 3.
CK_SAMPLES = [(f"ck{i:02d}", CK_CLASSES[i % 4]) for i in range(12)]
CK_FOLDS = {0: range(0, 4), 1: range(4, 9), 2: range(9, 12)}
# 6 SFEW validation samples, one holdout fold.
SFEW_SAMPLES = [(f"sf{i}", SFEW_CLASSES[i % 3]) for i in range(6)]

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
    return CK_SAMPLES if dataset == "ckplus" else SFEW_SAMPLES


def _model_rows(dataset: str, network: str, position: int, fold: int) -> dict[str, list]:
    """Prediction rows of one model: its fold's test samples, plus CK+ for SFEW models."""
    classes = CK_CLASSES if dataset == "ckplus" else SFEW_CLASSES
    rows = {name: [] for name in PREDICTION_SCHEMA.names}
    targets = [(dataset, fold, CK_FOLDS[fold] if dataset == "ckplus" else range(len(SFEW_SAMPLES)))]
    if dataset == "sfew":
        targets.append(("ckplus", -1, range(len(CK_SAMPLES))))
    for test, sample_fold, indices in targets:
        scenarios = SCENARIOS[(dataset, test, network)]
        for i in indices:
            sid, label = _samples(test)[i]
            rows["sample_id"].append(sid)
            rows["eval_dataset"].append(test)
            rows["fold"].append(sample_fold)
            rows["label"].append(label)
            rows["probs"].append(member_probs(classes, label, scenarios[i], position).tolist())
    return rows


def model_key(dataset: str, network: str, member: str, fold: int) -> str:
    return f"{dataset}-{network}-{member}-f{fold}"


def build_run(root: Path, *, settings: dict | None = None, datasets=("ckplus", "sfew"),
              drop_models=(), drop_rows: dict | None = None, histories: bool = True,
              run_id: str = "run1") -> Path:
    """Write a complete run under `root/store/runs/<run_id>/`; returns the run directory."""
    storage = root / "store"
    run_dir = storage / "runs" / run_id
    run_dir.mkdir(parents=True)
    drop_rows = drop_rows or {}
    infos = {}
    if "ckplus" in datasets:
        infos["ckplus"] = DatasetInfo("ckplus", CK_CLASSES, "kfold", [0, 1, 2], "/prep/ckplus", 12)
    if "sfew" in datasets:
        infos["sfew"] = DatasetInfo("sfew", SFEW_CLASSES, "holdout", [0], "/prep/sfew", 6,
                                    eval_on=["ckplus"] if "ckplus" in datasets else [])
    records = []
    for dataset in infos:
        folds = [0, 1, 2] if dataset == "ckplus" else [0]
        for network, members in MEMBERS.items():
            for position, member in enumerate(members):
                for fold in folds:
                    key = model_key(dataset, network, member, fold)
                    stage = "baseline" if network == "baseline" else "finetune"
                    records.append(ModelRecord(dataset, network, member, fold, stage, key,
                                               f"models/{key}"))
                    if key in drop_models:
                        continue
                    model_dir = storage / "models" / key
                    model_dir.mkdir(parents=True)
                    rows = _model_rows(dataset, network, position, fold)
                    if dataset == "sfew" and "ckplus" not in datasets:
                        keep = [i for i, e in enumerate(rows["eval_dataset"]) if e == "sfew"]
                        rows = {k: [v[i] for i in keep] for k, v in rows.items()}
                    if key in drop_rows:
                        keep = [i for i, s in enumerate(rows["sample_id"]) if s not in drop_rows[key]]
                        rows = {k: [v[i] for i in keep] for k, v in rows.items()}
                    pq.write_table(pa.table(rows, schema=PREDICTION_SCHEMA),
                                   model_dir / "predictions.parquet")
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
    return run_dir
