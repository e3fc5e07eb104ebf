"""The names of the files and folders a run writes, defined once for the writers (orchestrator)
and the readers (results, export); orchestrator.records holds what is inside them.

A run directory `<storage>/runs/<run_id>/`:
  plan.json                 RunPlan.to_json(); a run directory's last upload to a URI store
  config.yaml               the resolved configuration
  final.json                the final models, trained on all subjects (`partfer run --final`)
  analysis/complexity.json  models.describe.describe() of the run's architecture
  analysis/gradcam_<dataset>.npz   Grad-CAM maps of chosen test faces of one data set
  metrics/epochs.csv, tensorboard/   every model's figures after each epoch, while the run trains
  tables/ figures/ confusion/ report.md report.html   what `partfer report` builds
A finished model directory (one key of one stage):
  predictions.parquet  checkpoint.pt  history.csv  landmarks.parquet
  meta.json            written last: its presence marks the model done
Imports nothing of partfer: results/ may read these names without pulling in the orchestrator.
"""
from __future__ import annotations

from pathlib import Path

# ---- a run directory ------------------------------------------------------------------------------
RUNS_DIR = "runs"                 # in a store: <storage>/runs/<run_id>/
PLAN_FILE = "plan.json"
CONFIG_FILE = "config.yaml"
FINAL_FILE = "final.json"
ANALYSIS_DIR = "analysis"
COMPLEXITY_FILE = "complexity.json"
GRADCAM_PREFIX = "gradcam_"
GRADCAM_SUFFIX = ".npz"
TABLES_DIR = "tables"
FIGURES_DIR = "figures"
CONFUSION_DIR = "confusion"
REPORT_FILE = "report.md"
HTML_FILE = "report.html"
EPOCH_METRICS_FILE = "metrics/epochs.csv"      # every model's figures after each epoch
TENSORBOARD_DIR = "tensorboard"

# ---- a finished model directory -------------------------------------------------------------------
DONE_FILE = "meta.json"
CHECKPOINT_FILE = "checkpoint.pt"
PREDICTIONS_FILE = "predictions.parquet"
HISTORY_FILE = "history.csv"
LANDMARKS_FILE = "landmarks.parquet"


def store_candidates(run_dir: str | Path, storage: str) -> list[Path]:
    """The local folders that may hold the store of the run in `run_dir`, in order of preference:
    its grandparent when it sits in a `<store>/runs/<run_id>/` layout (a store copied or downloaded
    whole), then `storage`, the store plan.json records, when that is a local folder or a file://
    URI (a run folder copied on its own). A store at another URI is read through a local copy,
    which is the first candidate's case. Callers choose among them by what each must find there."""
    run_dir = Path(run_dir).resolve()
    candidates = [run_dir.parent.parent] if run_dir.parent.name == RUNS_DIR else []
    recorded = storage.removeprefix("file://")
    if recorded and "://" not in recorded:
        candidates.append(Path(recorded))
    return candidates


def gradcam_name(dataset: str) -> str:
    """The Grad-CAM file of one data set, inside ANALYSIS_DIR."""
    return f"{GRADCAM_PREFIX}{dataset}{GRADCAM_SUFFIX}"


def analysis_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / ANALYSIS_DIR


def complexity_path(run_dir: str | Path) -> Path:
    return analysis_dir(run_dir) / COMPLEXITY_FILE
