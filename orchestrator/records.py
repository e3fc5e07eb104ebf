"""Plain records that cross package boundaries: what a run trained, and where its outputs are.

The run directory `<out>/runs/<run_id>/` holds
  config.yaml   the resolved configuration
  plan.json     RunPlan.to_json(): settings, data sets (classes, folds) and every final model
  analysis/     gradcam_<dataset>.npz (Grad-CAM maps of chosen test faces), complexity.json
and each finished model writes, under its own key directory,
  predictions.parquet   PREDICTION_SCHEMA, one row per (evaluation data set, test sample)
  checkpoint.pt         the sub-network's state dict (+ landmark head where the stage has one)
  history.csv           per-epoch train/validation loss and accuracy
  landmarks.parquet     transfer stages: predicted vs true points of its region on its test rows
                        (sample_id, region, pred, truth: flat x0,y0,... in [0,1] crop coordinates)
  meta.json             the key's inputs; written last (its presence marks the model done)
results/ reads only plan.json and the files it points to.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import pyarrow as pa

PREDICTION_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string()),
    pa.field("eval_dataset", pa.string()),    # data set the sample comes from (cross-data-set: != trained)
    pa.field("fold", pa.int32()),              # fold whose test set held the sample (-1: not a fold test)
    pa.field("label", pa.string()),            # canonical expression name
    pa.field("probs", pa.list_(pa.float32())), # softmax, in the order of the TRAINED data set's classes
])


@dataclass(frozen=True)
class ModelRecord:
    """One final (last-stage) model of a run: the unit results aggregates."""
    dataset: str        # data set it was trained on
    network: str        # a name in orchestrator.networks.NETWORKS (baseline | ftl | el)
    member: str         # EL: the part name; Baseline/FTL: "m0".."m4"
    fold: int
    stage: str          # the stage whose outputs these are (baseline or finetune)
    key: str            # content hash of everything the model depends on
    dir: str            # path of its outputs, relative to the run's storage root
    # every stage's output directory (relative to the storage root), e.g. {"landmark": ..., "head":
    # ..., "finetune": ...}: landmarks.parquet of "landmark" (before) and "finetune" (after
    # fine-tuning, same stage-1 landmark head) feed the before/after study
    stage_dirs: dict = field(default_factory=dict)
    # predictions of this model on OTHER data sets (cross-data-set tests), PREDICTION_SCHEMA files
    # relative to the storage root; eval_dataset names the data set
    extra_predictions: list = field(default_factory=list)
    # train.selection it was trained under: the run's main one, or its no-peeking twin
    selection: str = "heldout_subjects"      # (runs planned before the field existed used held-out subjects)


@dataclass
class DatasetInfo:
    name: str
    classes: list[str]
    protocol: str                 # loso | kfold | holdout
    folds: list[int]
    prepared: str                 # prepared data directory
    n_samples: int
    eval_on: list[str] = field(default_factory=list)   # other data sets its models are tested on
    test_rows: int = 0            # rows the protocol tests, all folds together (Table I's denominator)


@dataclass
class RunPlan:
    run_id: str
    storage: str                  # storage root (absolute path or URI)
    settings: dict                # image_size, epochs_scale, seed, device, shrunk flags ...
    datasets: dict[str, DatasetInfo]
    models: list[ModelRecord]

    def to_json(self) -> str:
        return json.dumps({
            "run_id": self.run_id, "storage": self.storage, "settings": self.settings,
            "datasets": {k: asdict(v) for k, v in self.datasets.items()},
            "models": [asdict(m) for m in self.models],
        }, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunPlan":
        raw = json.loads(text)
        return cls(
            run_id=raw["run_id"], storage=raw["storage"], settings=raw["settings"],
            datasets={k: DatasetInfo(**v) for k, v in raw["datasets"].items()},
            models=[ModelRecord(**m) for m in raw["models"]],
        )


def selections(plan: RunPlan) -> list[str]:
    """The selections a run's models were trained under, its main one (train.selection) first
    and its no-peeking twin after it."""
    found = list(dict.fromkeys(r.selection for r in plan.models))
    main = plan.settings.get("selection")
    return sorted(found, key=lambda s: s != main)


def main_models(plan: RunPlan) -> list[ModelRecord]:
    """The models of the run's main selection: a no-peeking twin trains every model again, and
    an ensemble, a Grad-CAM sheet or an export takes one copy of each."""
    chosen = selections(plan)
    return [r for r in plan.models if not chosen or r.selection == chosen[0]]

