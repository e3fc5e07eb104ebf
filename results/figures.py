"""Training curves (loss and accuracy per epoch) and accuracy bar charts, ours beside the paper's.

Curves: for each (stage, network) of a data set a pair of panels, loss beside accuracy, one
colour per member: validation as a solid line (the median over folds, shaded between the lowest
and highest fold), training dashed. Early-stopped folds simply end sooner. Both axes are linear
with plain tick labels; when a first epoch's loss towers over the rest (a landmark stage can
start in the thousands) the loss axis is cut above the later epochs and the panel says so.
"""
from __future__ import annotations

import math
import warnings
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
from partfer.results.load import HISTORY_FILE, RunResults, resolve_stored
from partfer.results.paper import COLUMNS, TABLE1, display_name

# history.csv's curves kept for the figures; only epoch and val_loss are required
CURVES = ("train_loss", "val_loss", "train_acc", "val_acc")
HISTORY_COLUMNS = ["dataset", "network", "member", "fold", "stage", "epoch", *CURVES]
PAIRS_PER_ROW = 2                 # (loss, accuracy) panel pairs side by side
PANEL_SIZE = (3.6, 2.9)           # inches per panel
CUT_FACTOR = 3.0                  # a loss this many times the later epochs' top is cut off
SHADE_ALPHA = 0.2
STAGE_ORDER = ("baseline", "landmark", "head", "finetune")    # training order, panels too


@dataclass
class Histories:
    frame: pd.DataFrame                                   # HISTORY_COLUMNS, one row per epoch
    absent: int = 0                                       # models without history.csv
    rejected: list[str] = field(default_factory=list)     # "path: reason"


def _history_paths(results: RunResults, record) -> list[tuple[str | None, Path]]:
    """(stage, history.csv) of a model: its own directory (stage None: the record's, or the
    file's `stage` column), then each earlier transfer stage's directory (landmark, head)."""
    own = results.model_dir(record)
    paths: list[tuple[str | None, Path]] = [(None, own / HISTORY_FILE)]
    for stage, folder in sorted(record.stage_dirs.items()):
        where = resolve_stored(results.storage_root, folder)
        if where != own:
            paths.append((stage, where / HISTORY_FILE))
    return paths


def _read_history(path: Path, record, stage: str | None) -> pd.DataFrame | str:
    """One history.csv as HISTORY_COLUMNS rows, or why it cannot be used."""
    try:
        history = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        return f"{path}: unreadable ({exc})"
    lacking = [c for c in ("epoch", "val_loss") if c not in history.columns]
    if lacking:
        return f"{path}: lacks column(s) {', '.join(lacking)}"
    # A history may cover several stages of one model (a `stage` column); else the record's.
    if stage is None:
        stage = history["stage"].astype(str) if "stage" in history.columns else record.stage
    curves = {name: (pd.to_numeric(history[name], errors="coerce") if name in history.columns
                     else np.nan) for name in CURVES}
    return pd.DataFrame({
        "dataset": record.dataset, "network": record.network, "member": record.member,
        "fold": record.fold, "stage": stage,
        "epoch": pd.to_numeric(history["epoch"], errors="coerce"), **curves},
        columns=HISTORY_COLUMNS)


def load_histories(results: RunResults) -> Histories:
    """Every model's history.csv (its earlier transfer stages' too, where they left one); models
    without their own are counted, unusable files named with the reason."""
    frames, absent, rejected = [], 0, []
    for record in results.plan.models:
        for stage, path in _history_paths(results, record):
            if not path.is_file():
                absent += stage is None
                continue
            read = _read_history(path, record, stage)
            if isinstance(read, str):
                rejected.append(read)
            else:
                frames.append(read)
    frame = (pd.concat(frames, ignore_index=True).dropna(subset=["epoch"]) if frames
             else pd.DataFrame(columns=HISTORY_COLUMNS))
    return Histories(frame=frame, absent=absent, rejected=rejected)


def _fold_spread(panel: pd.DataFrame, value: str) -> tuple[np.ndarray, ...] | None:
    """(epochs, median, low, high, folds) of one member's curve over folds; None when unrecorded."""
    by_fold = panel.pivot_table(index="epoch", columns="fold", values=value, aggfunc="mean")
    if by_fold.empty:
        return None
    values = by_fold.to_numpy(dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)        # epochs no fold reached
        return (by_fold.index.to_numpy(dtype=float), np.nanmedian(values, axis=1),
                np.nanmin(values, axis=1), np.nanmax(values, axis=1), by_fold.shape[1])


def _draw(ax, panel: pd.DataFrame, members: list[str], kind: str, scale: float) -> list[float]:
    """Validation (solid, fold spread shaded) and training (dashed) curves of every member;
    returns the values drawn after each curve's first epoch (for the loss axis' cut)."""
    later: list[float] = []
    for member in members:
        rows = panel[panel["member"] == member]
        colour = None
        for split, style in (("val", "-"), ("train", "--")):
            spread = _fold_spread(rows, f"{split}_{kind}")
            if spread is None:
                continue
            epochs, median, low, high, folds = spread
            label = f"{member} ({folds} folds)" if colour is None else None
            (line,) = ax.plot(epochs, scale * median, style, color=colour, label=label,
                              linewidth=1.2 if split == "val" else 0.9)
            colour = line.get_color()
            if split == "val":
                ax.fill_between(epochs, scale * low, scale * high, color=colour,
                                alpha=SHADE_ALPHA, linewidth=0)
            later += (scale * high[1:]).tolist() if len(high) > 1 else []
    return [v for v in later if np.isfinite(v)]


def _plain_ticks(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)


def _loss_panel(ax, panel: pd.DataFrame, members: list[str], title: str) -> None:
    later = _draw(ax, panel, members, "loss", 1.0)
    ax.set_title(f"{title}: loss", fontsize=9)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    _plain_ticks(ax)
    drawn = panel[["train_loss", "val_loss"]].to_numpy(dtype=float)
    drawn = drawn[np.isfinite(drawn)]
    if later and len(drawn) and drawn.max() > CUT_FACTOR * max(later) > 0:
        ax.set_ylim(min(0.0, float(drawn.min())), 1.1 * max(later))
        ax.text(0.98, 0.95, f"cut: up to {drawn.max():,.4g} in early epochs", ha="right",
                va="top", fontsize=7, transform=ax.transAxes)
    if ax.lines:
        ax.legend(fontsize=7)


def _accuracy_panel(ax, panel: pd.DataFrame, members: list[str], title: str) -> None:
    _draw(ax, panel, members, "acc", 100.0)
    ax.set_title(f"{title}: accuracy", fontsize=9)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    _plain_ticks(ax)
    ax.set_ylim(0, 100)
    if not ax.lines:
        ax.text(0.5, 0.5, "no accuracy recorded\n(a landmark stage regresses points)",
                ha="center", va="center", fontsize=8, transform=ax.transAxes)


def _stage_rank(stage: str) -> int:
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)


def plot_curves(dataset: str, histories: pd.DataFrame):
    """Loss beside accuracy per (stage, network) of one data set: median over folds, min-max
    spread shaded for validation; training dashed."""
    histories = histories.reindex(columns=HISTORY_COLUMNS)
    panels = sorted({(s, n) for s, n in histories[["stage", "network"]].itertuples(index=False)},
                    key=lambda p: (network_sort_key(p[1]), _stage_rank(p[0]), p[0]))
    pairs = min(PAIRS_PER_ROW, len(panels))
    nrows = math.ceil(len(panels) / pairs)
    width, height = PANEL_SIZE
    fig = Figure(figsize=(2 * pairs * width, nrows * height), layout="constrained")
    axes = fig.subplots(nrows, 2 * pairs, squeeze=False)
    flat = list(axes.flat)
    for index, (stage, network) in enumerate(panels):
        panel = histories[(histories["stage"] == stage) & (histories["network"] == network)]
        members = sorted(panel["member"].unique(), key=member_sort_key)
        title = f"{network}, stage {stage}"
        _loss_panel(flat[2 * index], panel, members, title)
        _accuracy_panel(flat[2 * index + 1], panel, members, title)
        flat[2 * index + 1].set_xlim(flat[2 * index].get_xlim())     # same epochs, side by side
    for ax in flat[2 * len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{display_name(dataset)}: loss and accuracy per epoch (validation solid: median "
                 "over folds, min-max shaded; training dashed)", fontsize=10)
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
        rows = frame[frame["dataset"] == dataset].dropna(subset=list(CURVES), how="all")
        if len(rows):
            name = f"{dataset}_curves.png"
            written[name] = atomicio.save_figure(plot_curves(dataset, rows), out / name)
    for dataset, _ in ev.self_pairs:
        name = f"{dataset}_accuracy.png"
        written[name] = atomicio.save_figure(plot_accuracy(ev, dataset), out / name)
    return written
