"""Fold-summed confusion matrices per ensemble and per EL part, as CSV and labelled heat maps.

Files: `confusion/<dataset>_<network>.{csv,png}` (e.g. ckplus_el), EL parts as
`<dataset>_el-<part>`, cross-data-set tests as `<train>_on_<test>_<network>`.
"""
from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure  # pyplot-free: no global backend or figure registry
import numpy as np
import pandas as pd

from partfer import atomicio
from partfer.orchestrator.networks import NETWORKS
from partfer.orchestrator.run_files import CONFUSION_DIR
from partfer.results.evaluate import RunEvaluation, SystemScore
from partfer.results.paper import display_name


def file_stem(score: SystemScore) -> str:
    system = score.network if score.member is None else f"{score.network}-{score.member}"
    pair = score.train_dataset if not score.cross else f"{score.train_dataset}_on_{score.eval_dataset}"
    return f"{pair}_{system}"


def wanted(score: SystemScore) -> bool:
    """Ensembles and EL parts (the paper's systems); Baseline/FTL members stay in the tables."""
    spec = NETWORKS.get(score.network)
    return score.is_ensemble or (spec is not None and spec.by_part)


def confusion_frame(score: SystemScore) -> pd.DataFrame:
    frame = pd.DataFrame(score.confusion, index=score.classes, columns=score.classes)
    frame.index.name = "true \\ predicted"
    return frame


def _title(score: SystemScore, holdout: bool = False) -> str:
    where = display_name(score.train_dataset)
    if score.cross:
        where += f" -> {display_name(score.eval_dataset)}"
    elif holdout:
        where += " validation set"
    folds = len(score.fold_accuracy)
    if math.isnan(score.mean_accuracy):
        acc = "no predictions"
    elif holdout and folds == 1:
        acc = f"accuracy {100 * score.mean_accuracy:.2f}% ({score.n_samples} samples)"
    else:
        acc = (f"accuracy {100 * score.mean_accuracy:.2f}% (mean of {folds} fold"
               f"{'s' * (folds != 1)}), pooled {100 * score.pooled_accuracy:.2f}%")
    if score.dropped_labels:
        acc += "; dropped " + ", ".join(f"{n} {label}" for label, n in score.dropped_labels.items())
    return f"{where} {score.column}: {acc}"


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its total (the share of a true class predicted as each class), so a
    rare class reads as clearly as a common one; an empty row stays 0."""
    matrix = np.asarray(matrix, dtype=float)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def plot_confusion(score: SystemScore, holdout: bool = False):
    """Heat map of the row-normalised matrix, each cell's share (%) and count written in it;
    rows true, columns predicted.

    Margins are fixed in inches rather than found by constrained layout: a run writes dozens
    of these, and the layout solver would double their drawing time.
    """
    matrix = score.confusion
    n = len(score.classes)
    left, bottom, top, right = 1.25, 1.15, 0.75, 0.2          # inches: labels, title
    cell = 0.55
    width, height = left + right + cell * n, bottom + top + cell * n
    fig = Figure(figsize=(max(width, 4.0), height))
    fig.subplots_adjust(left=left / max(width, 4.0), right=1 - right / max(width, 4.0),
                        bottom=bottom / height, top=1 - top / height)
    ax = fig.subplots()
    shares = row_normalised(matrix)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), score.classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), score.classes, fontsize=8)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true (row shares, counts)", fontsize=8)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{100 * shares[i, j]:.0f}%\n({int(matrix[i, j])})", ha="center", va="center",
                    fontsize=7, color="white" if shares[i, j] > 0.5 else "black")
    fig.suptitle(_title(score, holdout), fontsize=8, wrap=True, y=1 - 0.08 / height, va="top")
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
        info = ev.plan.datasets.get(score.train_dataset)
        holdout = info is not None and info.protocol == "holdout"
        png = atomicio.save_figure(plot_confusion(score, holdout), out / f"{stem}.png")
        written[stem] = {"csv": atomicio.write_text(out / f"{stem}.csv", csv_text), "png": png}
    return written
