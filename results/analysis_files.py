"""Where the orchestrator's analysis outputs live in a run directory (`analysis/`).

complexity.json          models.describe.describe() of the run's architecture (Section IV-E)
gradcam_<dataset>.npz    Grad-CAM maps of chosen test faces of one data set (Fig. 11)
"""
from __future__ import annotations

from pathlib import Path

ANALYSIS_DIR = "analysis"
COMPLEXITY_FILE = "complexity.json"
GRADCAM_PREFIX = "gradcam_"


def analysis_dir(run_dir: Path) -> Path:
    return Path(run_dir) / ANALYSIS_DIR


def complexity_path(run_dir: Path) -> Path:
    return analysis_dir(run_dir) / COMPLEXITY_FILE


def gradcam_path(run_dir: Path, dataset: str) -> Path:
    return analysis_dir(run_dir) / f"{GRADCAM_PREFIX}{dataset}.npz"
