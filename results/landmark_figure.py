"""Fig. 10: EL's points on a few test faces, before (top row) and after (bottom row) fine-tuning.

Each face carries all five part networks' points of one fold, coloured by part as in the paper
(data_prep.ibug68.PART_COLOURS), the true points as small grey dots. The figure is drawn for the
first network of orchestrator.networks whose members are parts (EL). The faces come from the
run's prepared data (read with data_prep.prepared: pyarrow and numpy only).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure  # pyplot-free: no global backend or figure registry
from matplotlib.lines import Line2D
import numpy as np

from partfer.data_prep.ibug68 import PART_COLOURS, PART_ORDER
from partfer.data_prep.prepared import PreparedData, load_prepared
from partfer import atomicio
from partfer.orchestrator.networks import NETWORKS
from partfer.results.figures import FIGURES_DIR
from partfer.results.landmarks import LandmarkStudy, ModelLandmarks
from partfer.results.load import RunResults, resolve_stored
from partfer.results.paper import display_name

N_FACES = 6


def part_network() -> str | None:
    """The network whose parts Fig. 10 shows (None: no network has parts)."""
    return next((name for name, spec in NETWORKS.items() if spec.by_part), None)


@dataclass
class FaceChoice:
    fold: int
    sample_ids: list[str]
    parts: dict[str, ModelLandmarks]      # part -> that fold's EL model


def load_crops(results: RunResults, dataset: str) -> tuple[PreparedData | None, str | None]:
    """The data set's prepared crops, or None and why (a figure is skipped, never faked)."""
    info = results.plan.datasets.get(dataset)
    if info is None or not info.prepared:
        return None, f"the plan names no prepared data for {dataset!r}"
    path = Path(info.prepared)
    if not path.is_absolute() and not path.exists():
        path = resolve_stored(results.storage_root, info.prepared)
    try:
        return load_prepared(path), None
    except (OSError, ValueError) as exc:       # PreparedDataError is a ValueError
        return None, f"prepared data {path} unreadable ({exc})"


def choose_faces(study: LandmarkStudy, dataset: str, labels: dict[str, str],
                 n_faces: int = N_FACES) -> FaceChoice | None:
    """The fold with the most EL parts (lowest fold on ties) and up to n test faces of it that
    every part predicted, one per expression in turn so the faces differ."""
    by_fold: dict[int, dict[str, ModelLandmarks]] = {}
    network = part_network()
    for m in study.models:
        if m.record.dataset == dataset and m.record.network == network and m.region in PART_ORDER:
            by_fold.setdefault(m.record.fold, {})[m.region] = m
    if not by_fold:
        return None
    fold = min(by_fold, key=lambda f: (-len(by_fold[f]), f))
    parts = by_fold[fold]
    common = set(labels)
    for m in parts.values():
        common &= set(m.sample_ids)
    if not common:
        return None
    queues: dict[str, list[str]] = {}
    for sid in sorted(common):
        queues.setdefault(labels[sid], []).append(sid)
    chosen: list[str] = []
    while len(chosen) < n_faces and any(queues.values()):
        for label in sorted(queues):
            if queues[label] and len(chosen) < n_faces:
                chosen.append(queues[label].pop(0))
    return FaceChoice(fold, chosen, parts)


def _points(m: ModelLandmarks, sid: str, which: str) -> np.ndarray:
    i = m.sample_ids.index(sid)
    flat = {"before": m.before, "after": m.after, "truth": m.truth}[which][i]
    return flat.reshape(-1, 2)


def plot_landmarks(dataset: str, choice: FaceChoice, crops: PreparedData,
                   show_truth: bool = True) -> Figure:
    n = len(choice.sample_ids)
    width, height = 1.9 * n + 0.4, 5.0
    fig = Figure(figsize=(width, height))        # fixed margins: no layout solver, faster builds
    fig.subplots_adjust(left=0.3 / width, right=1 - 0.1 / width, bottom=0.5 / height,
                        top=1 - 0.75 / height, wspace=0.05, hspace=0.05)
    axes = fig.subplots(2, n, squeeze=False)
    row_of = {sid: i for i, sid in enumerate(crops.sample_ids)}
    outside = {"before": 0, "after": 0}      # predicted points off the crop: not visible
    for col, sid in enumerate(choice.sample_ids):
        image = crops.images[row_of[sid]]
        height, width = image.shape
        scale = np.array([width, height])
        for row, which in enumerate(("before", "after")):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray", vmin=0, vmax=255)
            for part in PART_ORDER:
                m = choice.parts.get(part)
                if m is None:
                    continue
                if show_truth:
                    truth = _points(m, sid, "truth") * scale
                    ax.scatter(truth[:, 0], truth[:, 1], s=3, c="lightgrey", linewidths=0)
                unit = _points(m, sid, which)
                outside[which] += int(((unit < 0) | (unit > 1)).any(axis=1).sum())
                pts = unit * scale
                ax.scatter(pts[:, 0], pts[:, 1], s=7, c=PART_COLOURS[part], linewidths=0)
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{crops.labels[row_of[sid]]}\n{sid}", fontsize=7)
            if col == 0:
                ax.set_ylabel(f"{which} fine-tuning", fontsize=8)
    handles = [Line2D([], [], marker="o", linestyle="", color=PART_COLOURS[p], label=p)
               for p in PART_ORDER if p in choice.parts]
    if show_truth:
        handles.append(Line2D([], [], marker="o", linestyle="", color="lightgrey", label="truth"))
    fig.legend(handles=handles, loc="lower center", ncols=len(handles), fontsize=7, frameon=False)
    missing = [p for p in PART_ORDER if p not in choice.parts]
    label = NETWORKS[part_network()].column
    title = (f"{display_name(dataset)}: {label} landmarks before (top) and after (bottom) fine-tuning, "
             f"fold {choice.fold} test faces")
    if missing:
        title += f" (no usable {', '.join(missing)} model)"
    if outside["before"] or outside["after"]:
        title += (f"\npredicted points outside the crop, not shown: {outside['before']} before, "
                  f"{outside['after']} after")
    fig.suptitle(title, fontsize=9, y=1 - 0.1 / height, va="top")
    return fig


def write_landmark_figures(study: LandmarkStudy, results: RunResults, run_dir: Path
                           ) -> tuple[dict[str, Path], list[str]]:
    """figures/<dataset>_landmarks.png per data set with EL before/after points; notes on skips."""
    out = Path(run_dir) / FIGURES_DIR
    written: dict[str, Path] = {}
    notes: list[str] = []
    network = part_network()
    datasets = sorted({m.record.dataset for m in study.models if m.record.network == network})
    for dataset in datasets:
        crops, problem = load_crops(results, dataset)
        if crops is None:
            notes.append(f"{display_name(dataset)}: no Fig. 10 figure: {problem}")
            continue
        labels = dict(zip(crops.sample_ids, crops.labels))
        choice = choose_faces(study, dataset, labels)
        if choice is None:
            notes.append(f"{display_name(dataset)}: no Fig. 10 figure: no test face that every EL "
                         "part of one fold predicted is in the prepared data")
            continue
        name = f"{dataset}_landmarks.png"
        written[name] = atomicio.save_figure(plot_landmarks(dataset, choice, crops), out / name)
    return written, notes
