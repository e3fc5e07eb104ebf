"""Fold-summed confusion matrices per ensemble and per EL part, as CSV and labelled heat maps.

Files: `confusion/<dataset>_<network>.{csv,png}` (e.g. ckplus_el), EL parts as
`<dataset>_el-<part>`, cross-data-set tests as `<train>_on_<test>_<network>`.
"""
from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure  # pyplot-free: no global backend or figure registry
import pandas as pd

from results import atomic
from results.evaluate import RunEvaluation, SystemScore
from results.paper import display_name

CONFUSION_DIR = "confusion"


def file_stem(score: SystemScore) -> str:
    system = score.network if score.member is None else f"{score.network}-{score.member}"
    pair = score.train_dataset if not score.cross else f"{score.train_dataset}_on_{score.eval_dataset}"
    return f"{pair}_{system}"


def wanted(score: SystemScore) -> bool:
    """Ensembles and EL parts (the paper's systems); Baseline/FTL members stay in the tables."""
    return score.is_ensemble or score.network == "el"


def confusion_frame(score: SystemScore) -> pd.DataFrame:
    frame = pd.DataFrame(score.confusion, index=score.classes, columns=score.classes)
    frame.index.name = "true \\ predicted"
    return frame


def _title(score: SystemScore) -> str:
    where = display_name(score.train_dataset)
    if score.cross:
        where += f" -> {display_name(score.eval_dataset)}"
    folds = len(score.fold_accuracy)
    acc = ("no predictions" if math.isnan(score.mean_accuracy) else
           f"accuracy {100 * score.mean_accuracy:.2f}% (mean of {folds} fold{'s' * (folds != 1)}), "
           f"pooled {100 * score.pooled_accuracy:.2f}%")
    if score.dropped_labels:
        acc += "; dropped " + ", ".join(f"{n} {label}" for label, n in score.dropped_labels.items())
    return f"{where} {score.column}: {acc}"


def plot_confusion(score: SystemScore):
    """Heat map with the count in each cell; rows true, columns predicted."""
    matrix = score.confusion
    n = len(score.classes)
    fig = Figure(figsize=(1.0 + 0.75 * n, 0.8 + 0.7 * n), layout="constrained")
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
    ax.set_xticks(range(n), score.classes, rotation=45, ha="right")
    ax.set_yticks(range(n), score.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if matrix[i, j] > threshold else "black")
    ax.set_title(_title(score), fontsize=8, wrap=True)
    return fig


def write_confusions(ev: RunEvaluation, run_dir: Path) -> dict[str, dict[str, Path]]:
    """CSV + PNG for every ensemble and EL part of every pair; returns stem -> {csv, png}."""
    out = Path(run_dir) / CONFUSION_DIR
    written: dict[str, dict[str, Path]] = {}
    for score in ev.scores:
        if not wanted(score) or not score.fold_accuracy:
            continue
        stem = file_stem(score)
        csv_text = confusion_frame(score).to_csv(lineterminator="\n")
        png = atomic.save_figure(plot_confusion(score), out / f"{stem}.png")
        written[stem] = {"csv": atomic.write_text(out / f"{stem}.csv", csv_text), "png": png}
    return written
