"""Every model's figures after each epoch, while the run trains: one CSV and TensorBoard event files.

The pack side (`epoch_reporter`, no Ray, no files) turns run_pack's per-pack lists into
{model key: figures} for the models that trained in that epoch and hands them to `send`: the
driver's Progress inline, a queue to the driver under Ray. Only the driver writes (`EpochFiles`),
under the run directory, so a pack on another node needs no path of the driver's:

- `metrics/epochs.csv`: one row per model and epoch (a resumed pack repeats the epochs after
  its last checkpoint: the last row of a key and epoch is the one that counts);
- `tensorboard/<data set>/<selection>/<network>-<member>/fold<k>/<stage>/`: one event file per
  model-stage, tags loss/train, loss/val, accuracy/train, accuracy/val.
"""
from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from pathlib import Path

from partfer.orchestrator.run_files import EPOCH_METRICS_FILE, TENSORBOARD_DIR
from partfer.orchestrator.training.tb_events import append_scalars
from partfer.orchestrator.training.jobs import PackJob, job_done

FIGURES = ("train_loss", "train_acc", "val_loss", "val_acc")
CSV_FILE = Path(EPOCH_METRICS_FILE)
CSV_COLUMNS = ("dataset", "selection", "network", "member", "fold", "stage", "key", "epoch",
               *FIGURES, "wall_time")
TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "train_acc": "accuracy/train",
        "val_acc": "accuracy/val"}

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
                append_scalars(self.tensorboard_dir(job, model, meta), epoch,
                               {TAGS[f]: values.get(f) for f in FIGURES}, stamp)
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
