"""Read a run directory (plan.json + every model's predictions) into one DataFrame.

Each model's own test predictions come from its predictions.parquet; its predictions on other
data sets (cross-data-set tests, Table III) from the files its record lists in
`extra_predictions`. A model whose own predictions are absent or unusable is reported in
`RunResults.missing`, an absent or unusable cross-data-set file in `RunResults.missing_cross`,
each with the reason; neither is ever silently left out of a number.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from partfer.orchestrator.records import PREDICTION_SCHEMA, ModelRecord, RunPlan, selections
from partfer.orchestrator.run_files import HISTORY_FILE, PLAN_FILE, PREDICTIONS_FILE, store_candidates

# One row per (model, evaluated sample). `fold` is the MODEL's fold; `sample_fold` is the
# predictions file's own column (the fold whose test set held the sample, -1 outside folds).
COLUMNS = ("dataset", "network", "member", "fold", "stage", "eval_dataset",
           "sample_id", "label", "probs", "sample_fold")

_SOFTMAX_TOLERANCE = 1e-3


class RunDirError(FileNotFoundError):
    """The directory is not a run directory (no plan.json)."""


class PlanError(ValueError):
    """plan.json exists but cannot be read as a RunPlan."""


class NoPredictionsError(Exception):
    """Not one planned model has usable predictions: there is nothing to report."""


class PredictionFileError(ValueError):
    """One predictions.parquet breaks PREDICTION_SCHEMA; the model is then reported missing."""


@dataclass(frozen=True)
class MissingModel:
    record: ModelRecord
    path: str          # the predictions file that was expected
    reason: str
    cross: bool = False   # True: one of the record's extra_predictions (cross-data-set) files


@dataclass
class RunResults:
    run_dir: Path
    plan: RunPlan                 # its models: those of `selection` only
    storage_root: Path
    predictions: pd.DataFrame
    missing: list[MissingModel] = field(default_factory=list)         # own predictions
    missing_cross: list[MissingModel] = field(default_factory=list)   # extra_predictions files
    selection: str = ""           # train.selection of the models read (see selections_in)
    selections: list[str] = field(default_factory=list)   # every selection the run trained, main first

    def model_dir(self, record: ModelRecord) -> Path:
        return resolve_model_dir(self.storage_root, record)

    def classes(self, dataset: str) -> list[str]:
        return list(self.plan.datasets[dataset].classes)


def read_plan(run_dir: Path) -> RunPlan:
    """The run's plan; a clear one-line error when the directory is not a run directory."""
    path = Path(run_dir) / PLAN_FILE
    if not path.is_file():
        raise RunDirError(f"{path}: no plan.json (not a run directory)")
    try:
        return RunPlan.from_json(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PlanError(f"{path}: not a valid run plan ({type(exc).__name__}: {exc})") from exc


def storage_root(run_dir: Path, plan: RunPlan, store: str | Path | None = None) -> Path:
    """Where model directories live.

    `store` (report --store) when given. Otherwise, of run_files.store_candidates, the one holding
    more of the plan's predictions, the layout on a tie. A copied run folder thus still reads the
    models it was trained with, never an empty folder beside the copy.
    """
    if store is not None:
        return Path(store).expanduser()
    run_dir = Path(run_dir).resolve()
    candidates = store_candidates(run_dir, plan.storage)
    if not candidates:
        raise PlanError(f"{run_dir / PLAN_FILE}: storage {plan.storage!r} is remote and the run "
                        "directory is not inside a <storage>/runs/ layout; copy the storage locally "
                        "or name a local copy with --store")
    return max(candidates, key=lambda root: _predictions_held(root, plan))


def _predictions_held(root: Path, plan: RunPlan) -> int:
    """How many of the plan's models have a predictions file under `root` (names that could
    leave the store do not count: check_inside refuses them later)."""
    return sum(_names_a_relative_path(record.dir) and (root / record.dir / PREDICTIONS_FILE).is_file()
               for record in plan.models)


def _names_a_relative_path(named: str) -> bool:
    """A non-empty relative path with no `..`: one that cannot leave the folder it is joined to
    (links aside: check_inside resolves them)."""
    text = str(named).replace("\\", "/")
    return bool(text) and not text.startswith("/") and "://" not in text and ".." not in text.split("/")


def check_inside(plan: RunPlan, root: Path, plan_path: Path) -> None:
    """PlanError unless every folder and file plan.json names for its models (their folders, each
    stage's, cross-data-set predictions) is a relative path inside the store, links resolved: a
    copied or edited plan.json must not make a report read predictions from elsewhere."""
    real_root = root.resolve()
    for record in plan.models:
        for named in (record.dir, *record.stage_dirs.values(), *record.extra_predictions):
            inside = _names_a_relative_path(named)
            if inside:
                resolved = (root / str(named).replace("\\", "/")).resolve()
                inside = resolved == real_root or real_root in resolved.parents
            if not inside:
                raise PlanError(f"{plan_path}: {record.network} {record.member} fold {record.fold} names "
                                f"{str(named)!r}, which is not inside the store {root} (plan.json may name "
                                f"only folders inside it)")


def resolve_stored(root: Path, relative: str) -> Path:
    """A path the plan records relative to the storage root (absolute paths are kept)."""
    path = Path(relative)
    return path if path.is_absolute() else root / path


def resolve_model_dir(root: Path, record: ModelRecord) -> Path:
    return resolve_stored(root, record.dir)


def read_predictions(path: Path, n_classes: int) -> tuple[pd.DataFrame, np.ndarray]:
    """One model's predictions: the scalar columns and a (rows, n_classes) probability matrix."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise PredictionFileError(f"unreadable parquet ({exc})") from exc
    absent = [name for name in PREDICTION_SCHEMA.names if name not in table.column_names]
    if absent:
        raise PredictionFileError(f"lacks column(s) {', '.join(absent)}")
    try:
        table = table.select(PREDICTION_SCHEMA.names).cast(PREDICTION_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PredictionFileError(f"columns do not match PREDICTION_SCHEMA ({exc})") from exc
    probs_col = table.column("probs").combine_chunks()
    lengths = probs_col.value_lengths().to_numpy(zero_copy_only=False)
    if probs_col.null_count or (len(lengths) and (lengths != n_classes).any()):
        raise PredictionFileError(f"probs must hold {n_classes} values (the trained classes) per row")
    probs = probs_col.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    probs = probs.reshape(len(table), n_classes)
    if not np.isfinite(probs).all():
        raise PredictionFileError("probs contain NaN or infinite values")
    if len(probs) and not np.allclose(probs.sum(axis=1), 1.0, atol=_SOFTMAX_TOLERANCE):
        raise PredictionFileError("probs rows do not sum to 1 (expected softmax outputs)")
    frame = table.drop_columns(["probs"]).to_pandas()
    if frame[["sample_id", "eval_dataset", "label"]].isna().any().any():
        raise PredictionFileError("null sample_id, eval_dataset or label")
    duplicated = frame.duplicated(["eval_dataset", "sample_id"])
    if duplicated.any():
        first = frame.loc[duplicated, "sample_id"].iloc[0]
        raise PredictionFileError(f"sample {first!r} predicted more than once")
    return frame, probs


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=object) for name in COLUMNS})


def _with_record(frame: pd.DataFrame, probs: np.ndarray, record: ModelRecord) -> pd.DataFrame:
    frame = frame.rename(columns={"fold": "sample_fold"})
    frame["probs"] = list(probs)
    for name in ("dataset", "network", "member", "fold", "stage"):
        frame[name] = getattr(record, name)
    return frame[list(COLUMNS)]


def _own_predictions(path: Path, record: ModelRecord, n_classes: int) -> pd.DataFrame:
    """A model's predictions.parquet; PredictionFileError says why it cannot be used."""
    frame, probs = read_predictions(path, n_classes)
    own = frame["eval_dataset"] == record.dataset
    strays = frame.loc[own & (frame["fold"] >= 0) & (frame["fold"] != record.fold), "fold"]
    if len(strays):
        # A model scored on another fold's test samples would leak training data into accuracy.
        raise PredictionFileError(f"holds test samples of fold {int(strays.iloc[0])}, not of its "
                                  f"own fold {record.fold}")
    return _with_record(frame, probs, record)


def _cross_predictions(path: Path, record: ModelRecord, n_classes: int) -> pd.DataFrame:
    """One extra_predictions file: rows of data sets OTHER than the one the model trained on."""
    frame, probs = read_predictions(path, n_classes)
    if (frame["eval_dataset"] == record.dataset).any():
        raise PredictionFileError(f"holds rows of the model's own data set {record.dataset!r} "
                                  "(cross-data-set files hold other data sets only)")
    return _with_record(frame, probs, record)


def _repeated_sample(frames: list[pd.DataFrame]) -> str | None:
    """A (data set, sample) that two of one model's files both predict, else None."""
    if len(frames) < 2:
        return None
    both = pd.concat([f[["eval_dataset", "sample_id"]] for f in frames], ignore_index=True)
    repeated = both[both.duplicated()]
    return None if repeated.empty else "{}/{}".format(*repeated.iloc[0])


def selections_in(plan: RunPlan) -> list[str]:
    """The selections a run's models were trained under, the main one first (records.selections)."""
    return selections(plan)


def load_run(run_dir: Path | str, selection: str | None = None,
             store: str | Path | None = None) -> RunResults:
    """Every model of the plan trained under `selection` (default: the run's main one) with its
    predictions; unusable files go to `missing*` with reasons. A run with a no-peeking twin holds
    every model twice, once per selection: each is read, and scored, on its own. `store`: where
    the models live, when not where storage_root finds them."""
    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    root = storage_root(run_dir, plan, store)
    check_inside(plan, root, run_dir / PLAN_FILE)
    available = selections_in(plan)
    if selection is None:
        selection = available[0] if available else ""
    elif selection not in available:
        raise PlanError(f"{run_dir / PLAN_FILE}: no models trained under selection {selection!r} "
                        f"(this run has {', '.join(available) or 'none'})")
    plan = dataclasses.replace(plan, models=[r for r in plan.models if r.selection == selection])
    frames: list[pd.DataFrame] = []
    missing: list[MissingModel] = []
    missing_cross: list[MissingModel] = []
    for record in plan.models:
        if record.dataset not in plan.datasets:
            raise PlanError(f"{run_dir / PLAN_FILE}: model {record.key} was trained on "
                            f"{record.dataset!r}, which the plan's datasets do not describe")
        n_classes = len(plan.datasets[record.dataset].classes)
        path = resolve_model_dir(root, record) / PREDICTIONS_FILE
        model_frames: list[pd.DataFrame] = []     # this model's usable files, own first
        if not path.is_file():
            missing.append(MissingModel(record, str(path), "no predictions.parquet"))
        else:
            try:
                model_frames.append(_own_predictions(path, record, n_classes))
            except PredictionFileError as exc:
                missing.append(MissingModel(record, str(path), str(exc)))
        for relative in record.extra_predictions:
            extra = resolve_stored(root, relative)
            if not extra.is_file():
                missing_cross.append(MissingModel(record, str(extra), "file absent", cross=True))
                continue
            try:
                cross = _cross_predictions(extra, record, n_classes)
            except PredictionFileError as exc:
                missing_cross.append(MissingModel(record, str(extra), str(exc), cross=True))
                continue
            repeated = _repeated_sample(model_frames + [cross])
            if repeated:
                missing_cross.append(MissingModel(record, str(extra), f"sample {repeated} is "
                                                  "already predicted by another file", cross=True))
                continue
            model_frames.append(cross)
        frames += model_frames
    predictions = pd.concat(frames, ignore_index=True) if frames else _empty_frame()
    predictions["fold"] = predictions["fold"].astype("int64")
    predictions["sample_fold"] = predictions["sample_fold"].astype("int64")
    return RunResults(run_dir=run_dir, plan=plan, storage_root=root, predictions=predictions,
                      missing=missing, missing_cross=missing_cross, selection=selection, selections=available)
