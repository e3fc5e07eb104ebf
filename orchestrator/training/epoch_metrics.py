"""Every model's figures after each epoch, while the run trains: one CSV and TensorBoard event files.

The pack side (`epoch_reporter`, no Ray, no files) turns run_pack's per-pack lists into
{model key: figures} for the models that trained in that epoch and hands them to `send`: the
driver's Progress inline, a queue to the driver under Ray. Only the driver writes (`EpochFiles`),
under the run directory, so a pack on another node needs no path of the driver's:

- `metrics/epochs.csv`: one row per model and epoch (a resumed pack repeats the epochs after
  its last checkpoint: the last row of a key and epoch is the one that counts);
- `tensorboard/<data set>/<selection>/<network>-<member>/fold<k>/<stage>/`: one event file per
  model-stage, tags loss/train and accuracy/train, and loss/ and accuracy/ of the rows the
  selection watches, named for what they are (the CSV's val_* columns): `test_fold` under the
  authors' evaluated_fold, `heldout_subjects`, or `train_rows` (evaluated after the epoch) under `last`;
- `.../<network>-<member>/mean_over_folds/<stage>/`: the mean over folds of each figure and
  epoch, written once training ends (`write_fold_means`).
"""
from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from pathlib import Path

from partfer import atomicio
from partfer.orchestrator.run_files import EPOCH_METRICS_FILE, TENSORBOARD_DIR
from partfer.orchestrator.training.tb_events import append_scalars
from partfer.orchestrator.training.jobs import PackJob, job_done

FIGURES = ("train_loss", "train_acc", "val_loss", "val_acc")
CSV_FILE = Path(EPOCH_METRICS_FILE)
CSV_COLUMNS = ("dataset", "selection", "network", "member", "fold", "stage", "key", "epoch",
               *FIGURES, "wall_time")
# What the val_* figures were computed on, by selection (training.jobs.monitored_rows).
WATCHED_ROWS = {"evaluated_fold": "test_fold", "heldout_subjects": "heldout_subjects", "last": "train_rows"}
MEAN_DIR = "mean_over_folds"


def tags(selection: str) -> dict[str, str]:
    """Figure name -> TensorBoard tag: the val_* figures are named for the rows they were computed on."""
    watched = WATCHED_ROWS.get(selection, "val")
    return {"train_loss": "loss/train", "val_loss": f"loss/{watched}", "train_acc": "accuracy/train",
            "val_acc": f"accuracy/{watched}"}

Figures = dict[str, dict[str, float | None]]      # model key -> figure name -> value


def _value(values, i: int) -> float | None:
    if values is None or i >= len(values):
        return None
    value = float(values[i])
    return value if math.isfinite(value) else None


def epoch_reporter(job: PackJob, send: Callable[[int, Figures], None]) -> Callable[[int, dict], None]:
    """An on_epoch callback for run_pack: each epoch, send(epoch, figures) for the models that
    were training in it (a model stops in the epoch it is last reported in)."""
    state: dict = {}

    def on_epoch(epoch: int, metrics: dict) -> None:
        if "keys" not in state:      # run_pack trains the pack's models that are not done, in order
            state["keys"] = [m.key for m in job.models if not job_done(m)]
            state["active"] = [True] * len(state["keys"])
        figures = {}
        for i, key in enumerate(state["keys"]):
            row = {name: _value(metrics.get(name), i) for name in FIGURES}
            if state["active"][i] and row["train_loss"] is not None:
                figures[key] = row
        state["active"] = [bool(a) for a in metrics.get("active", state["active"])]
        send(epoch, figures)
    return on_epoch


class EpochFiles:
    """Appends each reported epoch to the run's CSV and event files (one writer: the driver)."""

    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / CSV_FILE

    def write(self, job: PackJob, epoch: int, figures: Figures) -> None:
        models = {m.key: m for m in job.models}
        stamp = time.time()
        rows = []
        for key, values in figures.items():
            model = models.get(key)
            if model is None:
                continue
            # a shared training's epochs are each of its selections' epochs
            for out_key, meta in ((model.key, model.meta), *((o.key, o.meta) for o in model.shared)):
                rows.append([meta.get("dataset", job.dataset), meta.get("selection", job.stage.selection),
                             meta.get("network", ""), meta.get("member", ""), model.fold, job.stage.stage,
                             out_key, epoch, *("" if values.get(f) is None else f"{values[f]:.6g}" for f in FIGURES),
                             f"{stamp:.3f}"])
                named = tags(meta.get("selection", job.stage.selection))
                append_scalars(self.tensorboard_dir(job, model, meta), epoch,
                               {named[f]: values.get(f) for f in FIGURES}, stamp)
        if rows:
            self._append_csv(rows)

    def tensorboard_dir(self, job: PackJob, model, meta: dict | None = None) -> Path:
        meta = model.meta if meta is None else meta
        name = f"{meta.get('network', 'model')}-{meta.get('member', model.key[:8])}"
        return (self.run_dir / TENSORBOARD_DIR / meta.get("dataset", job.dataset)
                / meta.get("selection", job.stage.selection) / name / f"fold{model.fold}" / job.stage.stage)

    def _append_csv(self, rows: list[list]) -> None:
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if not self.csv_path.is_file():
            writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
        with open(self.csv_path, "a", encoding="utf-8") as handle:
            handle.write(buf.getvalue())


def write_fold_means(run_dir: Path | str) -> int:
    """One TensorBoard run per data set, selection, network member and stage holding the mean over
    folds of each figure and epoch (an epoch some folds did not reach averages those that did),
    from metrics/epochs.csv; each replaces the one an earlier (resumed) run wrote. Returns how many."""
    run_dir = Path(run_dir)
    path = run_dir / CSV_FILE
    if not path.is_file():
        return 0
    latest: dict[tuple, dict] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):     # a resumed pack's repeated epoch: its last row counts
            latest[(row["dataset"], row["selection"], row["network"], row["member"], row["stage"],
                    row["fold"], int(row["epoch"]))] = row
    groups: dict[tuple, dict[int, dict[str, list[float]]]] = {}
    for (dataset, selection, network, member, stage, _fold, epoch), row in latest.items():
        sums = groups.setdefault((dataset, selection, network, member, stage), {}).setdefault(epoch, {})
        for figure in FIGURES:
            if row.get(figure):
                sums.setdefault(figure, []).append(float(row[figure]))
    for (dataset, selection, network, member, stage), epochs in groups.items():
        final = run_dir / TENSORBOARD_DIR / dataset / selection / f"{network}-{member}" / MEAN_DIR / stage
        build = atomicio.make_temp_dir(final)
        named = tags(selection)
        for epoch in sorted(epochs):
            append_scalars(build, epoch, {named[f]: sum(v) / len(v) for f, v in epochs[epoch].items()})
        atomicio.replace_dir(build, final)
    return len(groups)
