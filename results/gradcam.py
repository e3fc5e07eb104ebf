"""Fig. 11: Grad-CAM heat maps of Baseline, FTL and each EL part on a few test faces.

The run writes `analysis/gradcam_<dataset>.npz` holding
  images (K, S, S) uint8 face crops; sample_ids (K,); labels (K,) true class names;
  classes (C,) the trained classes; and per system (orchestrator.networks: baseline, ftl, el-<part>)
  map_<system> (K, S, S) float in [0, 1] (Baseline/FTL: the union, elementwise max, of their
  5 members' maps, as in the paper) and pred_<system> (K,) int: the predicted class index, or
  -1 where the system has no model for that face (its fold's models are missing).
This module checks that contract and lays the faces out like Fig. 11: one row per face, the
original, then each system's map over it with its prediction in the title.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure  # pyplot-free: no global backend or figure registry
import numpy as np

from partfer import atomicio
from partfer.orchestrator.networks import gradcam_systems, gradcam_title
from partfer.results.figures import FIGURES_DIR
from partfer.orchestrator.run_files import ANALYSIS_DIR, GRADCAM_PREFIX, GRADCAM_SUFFIX, analysis_dir, gradcam_name
from partfer.results.paper import display_name

_RANGE_TOLERANCE = 1e-3


class GradcamFileError(ValueError):
    """A gradcam npz breaks the contract; its figure is skipped with this reason."""


@dataclass
class GradcamSet:
    dataset: str
    path: Path
    images: np.ndarray                    # (K, S, S) uint8
    sample_ids: list[str]
    labels: list[str]
    classes: list[str]
    maps: dict[str, np.ndarray]           # system -> (K, h, w) in [0, 1]
    preds: dict[str, np.ndarray]          # system -> (K,) class indices
    absent: list[str] = field(default_factory=list)   # systems of Fig. 11 without a map


def _strings(data, key: str, n: int | None) -> list[str]:
    values = data[key]
    if values.ndim != 1 or (n is not None and len(values) != n):
        raise GradcamFileError(f"{key} must be a vector of {n if n is not None else 'C'} names")
    return [str(v) for v in values.tolist()]


def read_gradcam(path: Path, dataset: str) -> GradcamSet:
    """Read and check one npz (no pickles); GradcamFileError names what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise GradcamFileError(f"unreadable npz ({exc})") from exc
    absent = [k for k in ("images", "sample_ids", "labels", "classes") if k not in arrays]
    if absent:
        raise GradcamFileError(f"lacks array(s) {', '.join(absent)}")
    images = arrays["images"]
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise GradcamFileError(f"images must be (K, S, S) uint8 with K > 0, got "
                               f"{images.shape} {images.dtype}")
    k = len(images)
    sample_ids = _strings(arrays, "sample_ids", k)
    labels = _strings(arrays, "labels", k)
    classes = _strings(arrays, "classes", None)
    maps, preds, missing = {}, {}, []
    systems = gradcam_systems()
    for system in systems:
        map_key, pred_key = f"map_{system}", f"pred_{system}"
        if map_key not in arrays and pred_key not in arrays:
            missing.append(system)
            continue
        if map_key not in arrays or pred_key not in arrays:
            raise GradcamFileError(f"{system}: has only one of {map_key}, {pred_key}")
        heat = arrays[map_key].astype(np.float64)
        if heat.ndim != 3 or len(heat) != k:
            raise GradcamFileError(f"{map_key} must be (K={k}, h, w), got {heat.shape}")
        if not np.isfinite(heat).all() or heat.min() < -_RANGE_TOLERANCE \
                or heat.max() > 1 + _RANGE_TOLERANCE:
            raise GradcamFileError(f"{map_key} must lie in [0, 1]")
        pred = arrays[pred_key]
        if pred.shape != (k,) or not np.issubdtype(pred.dtype, np.integer):
            raise GradcamFileError(f"{pred_key} must be (K={k},) integers, got {pred.shape} "
                                   f"{pred.dtype}")
        if len(pred) and (pred.min() < -1 or pred.max() >= len(classes)):
            raise GradcamFileError(f"{pred_key} holds a class index outside 0..{len(classes) - 1} "
                                   "(or -1: no model)")
        maps[system], preds[system] = np.clip(heat, 0.0, 1.0), pred.astype(np.int64)
    if not maps:
        raise GradcamFileError("holds no map_<system> array of " + ", ".join(systems))
    return GradcamSet(dataset, Path(path), images, sample_ids, labels, classes, maps, preds,
                      missing)


def plot_gradcam(gc: GradcamSet) -> Figure:
    """Rows = faces; columns = the crop, then each system's map overlaid (jet, half opaque)."""
    systems = [s for s in gradcam_systems() if s in gc.maps]
    k, ncols = len(gc.images), 1 + len(systems)
    fig = Figure(figsize=(1.45 * ncols, 1.65 * k + 0.5), layout="constrained")
    axes = fig.subplots(k, ncols, squeeze=False)
    for row in range(k):
        image = gc.images[row]
        height, width = image.shape
        ax = axes[row, 0]
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(("original\n" if row == 0 else "") + f"true: {gc.labels[row]}", fontsize=7)
        ax.set_ylabel(gc.sample_ids[row], fontsize=6)
        for col, system in enumerate(systems, start=1):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray", vmin=0, vmax=255)
            head = "" if row else gradcam_title(system) + "\n"
            index = int(gc.preds[system][row])
            if index < 0:                       # no model of this system for this face's fold
                ax.set_title(head + "no model", fontsize=7, color="grey")
                continue
            # extent stretches a coarser map over the crop, as Grad-CAM's upsampling does
            ax.imshow(gc.maps[system][row], cmap="jet", alpha=0.5, vmin=0, vmax=1,
                      extent=(0, width, height, 0), interpolation="bilinear")
            predicted = gc.classes[index]
            right = predicted == gc.labels[row]
            ax.set_title(head + predicted, fontsize=7, color="darkgreen" if right else "firebrick")
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    title = f"{display_name(gc.dataset)}: Grad-CAM (title: predicted class; green right, red wrong)"
    if gc.absent:
        title += "\nno map for " + ", ".join(gradcam_title(s) for s in gc.absent)
    fig.suptitle(title, fontsize=9)
    return fig


def gradcam_files(run_dir: Path) -> dict[str, Path]:
    """data set -> its npz under analysis/, for every gradcam_<dataset>.npz the run wrote."""
    folder = analysis_dir(run_dir)
    if not folder.is_dir():
        return {}
    return {p.name[len(GRADCAM_PREFIX):-len(GRADCAM_SUFFIX)]: p
            for p in sorted(folder.glob(gradcam_name("*")))}


def write_gradcam_figures(run_dir: Path, datasets: list[str], out_dir: Path | None = None
                          ) -> tuple[dict[str, Path], list[str]]:
    """figures/<dataset>_gradcam.png (under out_dir, default the run directory) for each of the
    run's npz files; notes for data sets without one or broken ones."""
    out = Path(out_dir if out_dir is not None else run_dir) / FIGURES_DIR
    files = gradcam_files(run_dir)
    written: dict[str, Path] = {}
    notes: list[str] = []
    for dataset in sorted(set(datasets) | set(files)):
        path = files.get(dataset)
        if path is None:
            notes.append(f"{display_name(dataset)}: no Grad-CAM figure: the run wrote no "
                         f"{ANALYSIS_DIR}/{gradcam_name(dataset)}")
            continue
        try:
            gc = read_gradcam(path, dataset)
        except GradcamFileError as exc:
            notes.append(f"{display_name(dataset)}: no Grad-CAM figure: {path.name}: {exc}")
            continue
        if gc.absent:
            notes.append(f"{display_name(dataset)}: Grad-CAM maps absent for "
                         + ", ".join(gradcam_title(s) for s in gc.absent))
        name = f"{dataset}_gradcam.png"
        written[name] = atomicio.save_figure(plot_gradcam(gc), out / name)
    return written, notes
