"""Training curves (validation loss per epoch) and accuracy bar charts, ours beside the paper's.

Curves: one panel per (stage, network) of a data set, one line per member: the median over
folds, shaded between the lowest and highest fold. Early-stopped folds simply end sooner. The
loss axis is logarithmic: a first epoch's loss in the thousands would flatten a linear one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure  # pyplot-free: no global backend or figure registry
from matplotlib.ticker import MaxNLocator
import numpy as np
import pandas as pd

from partfer import atomicio
from partfer.orchestrator.run_files import FIGURES_DIR
from partfer.results.comparability import shrink_reasons
from partfer.results.evaluate import RunEvaluation, member_sort_key, network_sort_key
from partfer.results.load import HISTORY_FILE, RunResults
from partfer.results.paper import COLUMNS, TABLE1, display_name

HISTORY_COLUMNS = ["dataset", "network", "member", "fold", "stage", "epoch", "val_loss"]


@dataclass
class Histories:
    frame: pd.DataFrame                                   # HISTORY_COLUMNS, one row per epoch
    absent: int = 0                                       # models without history.csv
    rejected: list[str] = field(default_factory=list)     # "path: reason"


def load_histories(results: RunResults) -> Histories:
    """Every model's history.csv; absent files are counted, unusable ones named with the reason."""
    frames, absent, rejected = [], 0, []
    for record in results.plan.models:
        path = results.model_dir(record) / HISTORY_FILE
        if not path.is_file():
            absent += 1
            continue
        try:
            history = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            rejected.append(f"{path}: unreadable ({exc})")
            continue
        lacking = [c for c in ("epoch", "val_loss") if c not in history.columns]
        if lacking:
            rejected.append(f"{path}: lacks column(s) {', '.join(lacking)}")
            continue
        # A history may cover several stages of one model (a `stage` column); else the record's.
        stage = history["stage"].astype(str) if "stage" in history.columns else record.stage
        frames.append(pd.DataFrame({
            "dataset": record.dataset, "network": record.network, "member": record.member,
            "fold": record.fold, "stage": stage,
            "epoch": pd.to_numeric(history["epoch"], errors="coerce"),
            "val_loss": pd.to_numeric(history["val_loss"], errors="coerce")}))
    frame = (pd.concat(frames, ignore_index=True).dropna(subset=["epoch"]) if frames
             else pd.DataFrame(columns=HISTORY_COLUMNS))
    return Histories(frame=frame, absent=absent, rejected=rejected)


def plot_curves(dataset: str, histories: pd.DataFrame):
    """Validation loss vs epoch for one data set: median over folds and min-max spread."""
    panels = sorted({(s, n) for s, n in histories[["stage", "network"]].itertuples(index=False)},
                    key=lambda p: (network_sort_key(p[1]), p[0]))
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.5 * ncols, 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (stage, network) in zip(axes.flat, panels):
        panel = histories[(histories["stage"] == stage) & (histories["network"] == network)]
        for member in sorted(panel["member"].unique(), key=member_sort_key):
            by_fold = panel[panel["member"] == member].pivot_table(
                index="epoch", columns="fold", values="val_loss", aggfunc="mean")
            values = by_fold.to_numpy(dtype=float)
            epochs = by_fold.index.to_numpy(dtype=float)
            with np.errstate(all="ignore"):
                median = np.nanmedian(values, axis=1)
                low, high = np.nanmin(values, axis=1), np.nanmax(values, axis=1)
            (line,) = ax.plot(epochs, median, label=f"{member} ({by_fold.shape[1]} folds)")
            ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(f"{network}, stage {stage}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("validation loss (log)")
        if (panel["val_loss"] > 0).any():
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{display_name(dataset)}: validation loss, log axis (median over folds, min-max shaded)",
                 fontsize=10)
    return fig


def plot_accuracy(ev: RunEvaluation, dataset: str):
    """Bars of our Table I row beside the paper's (when the paper has this data set)."""
    ours = []
    for column in COLUMNS:
        score = ev.score(dataset, dataset, column)
        ours.append(float("nan") if score is None else 100 * score.mean_accuracy)
    paper = TABLE1.get(dataset)
    x = np.arange(len(COLUMNS))
    width = 0.4 if paper else 0.6
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.subplots()
    ours_x = x - width / 2 if paper else x
    bars = ax.bar(ours_x, np.nan_to_num(ours), width, label="ours")
    for bar, value in zip(bars, ours):
        ax.annotate("n/a" if math.isnan(value) else f"{value:.1f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=7)
    if paper:
        paper_bars = ax.bar(x + width / 2, [paper[c] for c in COLUMNS], width, label="paper")
        ax.bar_label(paper_bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, COLUMNS)
    ax.set_ylim(0, 110)
    ax.set_ylabel("accuracy (%), mean over folds")
    title = f"{display_name(dataset)}: accuracy" + (", ours vs paper" if paper else "")
    if shrink_reasons(ev.plan):
        title += "\n(NOT comparable with the paper: shrunk or synthetic run, see report)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def write_figures(ev: RunEvaluation, run_dir: Path, histories: Histories | None = None
                  ) -> dict[str, Path]:
    """Curves (where histories exist) and accuracy charts; returns file name -> path."""
    out = Path(run_dir) / FIGURES_DIR
    histories = histories if histories is not None else load_histories(ev.results)
    written: dict[str, Path] = {}
    frame = histories.frame
    for dataset in sorted(frame["dataset"].unique()) if len(frame) else []:
        rows = frame[frame["dataset"] == dataset].dropna(subset=["val_loss"])
        if len(rows):
            name = f"{dataset}_curves.png"
            written[name] = atomicio.save_figure(plot_curves(dataset, rows), out / name)
    for dataset, _ in ev.self_pairs:
        name = f"{dataset}_accuracy.png"
        written[name] = atomicio.save_figure(plot_accuracy(ev, dataset), out / name)
    return written
