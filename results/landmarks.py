"""The landmark before/after study (paper Sections IV-B and V-B): does fine-tuning for expressions
keep the extractor's landmark skill?

For every transfer model (FTL: the whole face, EL: its part) two landmarks.parquet files hold the
points of the same test faces: "before" from the landmark stage (stage-1 extractor + head),
"after" from the fine-tune stage (fine-tuned extractor + the SAME stage-1 landmark head). The
error is the paper's Eq. 1 measure: the mean absolute difference between predicted and true
coordinates, in crop-normalised units ([0, 1]) and in pixels of the 160x160 crop. A model's
files that are absent or unusable are listed with the reason and used in no number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from partfer.data_prep.ibug68 import ALL_REGIONS, FULL_FACE, PART_ORDER, region_indices
from partfer.data_prep.schema import CROP_SIZE
from partfer.orchestrator.networks import NETWORKS, column_of
from partfer.orchestrator.records import ModelRecord, RunPlan
from partfer import atomicio
from partfer.orchestrator.run_files import LANDMARKS_FILE
from partfer.results.comparability import warning_line
from partfer.results.evaluate import network_sort_key
from partfer.results.load import RunResults, resolve_stored
from partfer.results.markdown import bullets, markdown_table
from partfer.results.paper import LANDMARK_CHANGE, display_name

BEFORE_STAGE, AFTER_STAGE = "landmark", "finetune"
# A relative change smaller than this reads as "about the same" (the paper's "almost similar").
SAME_TOLERANCE = 0.05
_TRUTH_TOLERANCE = 1e-5
MODEL_COLUMNS = ["dataset", "network", "member", "region", "fold", "n_samples", "mae_before",
                 "mae_after", "mae_mean_shape"]
SUMMARY_COLUMNS = ["dataset", "network", "region", "mae_before", "mae_after", "change",
                   "change_pct", "px_before", "px_after", "px_change", "mae_mean_shape", "px_mean_shape",
                   "direction", "paper",
                   "folds_used", "folds_planned", "models_used", "models_planned", "samples",
                   "missing_folds"]


class LandmarkFileError(ValueError):
    """One landmarks.parquet breaks the contract; its model is left out of the study."""


@dataclass
class Points:
    """One stage's file: predicted and true flat coordinates (x0, y0, ...) per test sample."""
    region: str
    sample_ids: list[str]
    pred: np.ndarray           # (N, 2k)
    truth: np.ndarray          # (N, 2k)


@dataclass
class ModelLandmarks:
    """One model's points before and after fine-tuning, on the test samples both files hold."""
    record: ModelRecord
    region: str
    sample_ids: list[str]
    before: np.ndarray
    after: np.ndarray
    truth: np.ndarray
    unmatched: int = 0          # samples in only one of the two files (left out)
    # the reference a landmark stage must beat: the mean of the training faces' true points
    # (the data set's other test folds), predicted for every test face; None until set
    mean_shape: np.ndarray | None = None

    @property
    def mae_before(self) -> float:
        return float(np.abs(self.before - self.truth).mean())

    @property
    def mae_mean_shape(self) -> float:
        if self.mean_shape is None:
            return float("nan")
        return float(np.abs(self.mean_shape[None, :] - self.truth).mean())

    @property
    def mae_after(self) -> float:
        return float(np.abs(self.after - self.truth).mean())


@dataclass(frozen=True)
class LandmarkReject:
    record: ModelRecord
    path: str
    reason: str


@dataclass
class LandmarkStudy:
    planned: list[ModelRecord]                       # transfer models with both stages' dirs
    models: list[ModelLandmarks] = field(default_factory=list)
    rejected: list[LandmarkReject] = field(default_factory=list)

    def for_group(self, dataset: str, network: str, region: str) -> list[ModelLandmarks]:
        return [m for m in self.models if (m.record.dataset, m.record.network, m.region)
                == (dataset, network, region)]


def expected_region(record: ModelRecord) -> str | None:
    """The region a model regresses (orchestrator.networks: FTL the whole face, EL its part);
    None when unknown."""
    spec = NETWORKS.get(record.network)
    region = spec.region_of(record.member) if spec and spec.has_landmarks else None
    return region if region in ALL_REGIONS else None


def _flat(column: pa.ChunkedArray, width: int, what: str) -> np.ndarray:
    array = column.combine_chunks()
    if array.null_count:
        raise LandmarkFileError(f"null {what} rows")
    lengths = array.value_lengths().to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != width).any():
        raise LandmarkFileError(f"{what} must hold {width} values (x, y of {width // 2} points) "
                                "per row")
    values = array.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    values = values.reshape(len(array), width)
    if not np.isfinite(values).all():
        raise LandmarkFileError(f"{what} holds NaN or infinite values")
    return values


def read_points(path: Path, region: str | None) -> Points:
    """One landmarks.parquet (sample_id, region, pred, truth); LandmarkFileError says why not."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise LandmarkFileError(f"unreadable parquet ({exc})") from exc
    absent = [c for c in ("sample_id", "region", "pred", "truth") if c not in table.column_names]
    if absent:
        raise LandmarkFileError(f"lacks column(s) {', '.join(absent)}")
    if table.num_rows == 0:
        raise LandmarkFileError("no rows")
    regions = set(table.column("region").to_pylist())
    if len(regions) != 1:
        raise LandmarkFileError(f"mixes regions {sorted(map(str, regions))}")
    found = regions.pop()
    if region is not None and found != region:
        raise LandmarkFileError(f"region {found!r}, expected {region!r} for this model")
    if found not in ALL_REGIONS:
        raise LandmarkFileError(f"unknown region {found!r}")
    width = 2 * len(region_indices(found))
    ids = [str(s) for s in table.column("sample_id").to_pylist()]
    if len(set(ids)) != len(ids):
        raise LandmarkFileError("a sample appears more than once")
    return Points(found, ids, _flat(table.column("pred"), width, "pred"),
                  _flat(table.column("truth"), width, "truth"))


def _pair(record: ModelRecord, before: Points, after: Points) -> ModelLandmarks:
    """Match the two stages' samples; their truths must agree (same prepared data)."""
    if before.region != after.region:
        raise LandmarkFileError(f"region {after.region!r} after fine-tuning but {before.region!r} "
                                "before")
    position = {sid: i for i, sid in enumerate(after.sample_ids)}
    b = [i for i, sid in enumerate(before.sample_ids) if sid in position]
    if not b:
        raise LandmarkFileError("no test sample in common with the landmark stage's file")
    common = [before.sample_ids[i] for i in b]
    a = [position[s] for s in common]
    truth = before.truth[b]
    if np.abs(truth - after.truth[a]).max() > _TRUTH_TOLERANCE:
        raise LandmarkFileError("true points differ from the landmark stage's for the same "
                                "samples (different prepared data?)")
    unmatched = len(before.sample_ids) + len(after.sample_ids) - 2 * len(common)
    return ModelLandmarks(record, before.region, common, before.pred[b], after.pred[a], truth,
                          unmatched)


def load_landmark_study(results: RunResults) -> LandmarkStudy:
    """Both stages' points of every transfer model that has a landmark and a fine-tune stage."""
    planned = [r for r in results.plan.models
               if BEFORE_STAGE in r.stage_dirs and AFTER_STAGE in r.stage_dirs]
    study = LandmarkStudy(planned=planned)
    for record in planned:
        region = expected_region(record)
        loaded = {}
        for stage in (BEFORE_STAGE, AFTER_STAGE):
            path = resolve_stored(results.storage_root, record.stage_dirs[stage]) / LANDMARKS_FILE
            if not path.is_file():
                study.rejected.append(LandmarkReject(record, str(path),
                                                     f"no {LANDMARKS_FILE} ({stage} stage)"))
                break
            try:
                loaded[stage] = read_points(path, region)
            except LandmarkFileError as exc:
                study.rejected.append(LandmarkReject(record, str(path), f"{stage} stage: {exc}"))
                break
        if len(loaded) != 2:
            continue
        try:
            study.models.append(_pair(record, loaded[BEFORE_STAGE], loaded[AFTER_STAGE]))
        except LandmarkFileError as exc:
            study.rejected.append(LandmarkReject(record, record.stage_dirs[AFTER_STAGE], str(exc)))
    _set_mean_shapes(study.models)
    return study


def _set_mean_shapes(models: list[ModelLandmarks]) -> None:
    """Each model's mean-shape reference: the mean true points of its data set's faces outside
    its own test set (under a cross-validation protocol, its training faces). A single hold-out
    test set has no other faces: there the mean of its own test faces stands in (a slightly
    easier reference)."""
    truths: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for m in models:
        pool = truths.setdefault((m.record.dataset, m.region), {})
        pool.update(zip(m.sample_ids, m.truth))
    for m in models:
        pool = truths[(m.record.dataset, m.region)]
        own = set(m.sample_ids)
        others = [t for sid, t in pool.items() if sid not in own]
        m.mean_shape = np.mean(others if others else list(m.truth), axis=0)


def models_frame(study: LandmarkStudy) -> pd.DataFrame:
    rows = [[m.record.dataset, m.record.network, m.record.member, m.region, m.record.fold,
             len(m.sample_ids), m.mae_before, m.mae_after, m.mae_mean_shape] for m in study.models]
    return pd.DataFrame(rows, columns=MODEL_COLUMNS)


def _region_key(region: str) -> tuple[int, str]:
    order = (*PART_ORDER, FULL_FACE)
    return (order.index(region), "") if region in order else (len(order), region)


def direction(before: float, after: float) -> str:
    if before > 0 and abs(after - before) / before < SAME_TOLERANCE:
        return "about the same"
    return "decreased" if after < before else "increased"


def summary_frame(study: LandmarkStudy) -> pd.DataFrame:
    """Mean absolute error per (data set, network, region): mean over a fold's models, then
    over folds (the paper's averaging); folds without a usable model are named, not filled."""
    groups: dict[tuple[str, str, str], list[ModelRecord]] = {}
    for record in study.planned:
        region = expected_region(record) or record.member
        groups.setdefault((record.dataset, record.network, region), []).append(record)
    rows = []
    for (dataset, network, region) in sorted(groups, key=lambda k: (k[0], network_sort_key(k[1]),
                                                                    _region_key(k[2]))):
        planned = groups[(dataset, network, region)]
        used = study.for_group(dataset, network, region)
        planned_folds = sorted({r.fold for r in planned})
        by_fold: dict[int, list[ModelLandmarks]] = {}
        for m in used:
            by_fold.setdefault(m.record.fold, []).append(m)
        missing = [f for f in planned_folds if f not in by_fold]
        if by_fold:
            before = float(np.mean([np.mean([m.mae_before for m in ms]) for ms in by_fold.values()]))
            after = float(np.mean([np.mean([m.mae_after for m in ms]) for ms in by_fold.values()]))
            mean_shape = float(np.mean([np.mean([m.mae_mean_shape for m in ms]) for ms in by_fold.values()]))
            change = after - before
            trend = direction(before, after)
            change_pct = 100 * change / before if before > 0 else float("nan")
        else:
            before = after = change = change_pct = mean_shape = float("nan")
            trend = ""
        by_part = network in NETWORKS and NETWORKS[network].by_part
        paper = LANDMARK_CHANGE.get(region, "") if by_part else ""      # the paper's per-part statements
        rows.append([dataset, network, region, before, after, change, change_pct,
                     before * CROP_SIZE, after * CROP_SIZE, change * CROP_SIZE, mean_shape,
                     mean_shape * CROP_SIZE, trend, paper,
                     len(by_fold), len(planned_folds), len(used), len(planned),
                     sum(len(m.sample_ids) for m in used), " ".join(map(str, missing))])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _fmt(value: float, spec: str) -> str:
    return "" if value is None or math.isnan(value) else format(value, spec)


def study_markdown(study: LandmarkStudy) -> str:
    """The before/after table beside the paper's Section V-B statements, with what is missing."""
    if not study.planned:
        return ("No transfer model of this run has both a landmark and a fine-tune stage, so "
                "the before/after study is skipped.\n")
    frame = summary_frame(study)
    rows = []
    for r in frame.itertuples(index=False):
        rows.append([display_name(r.dataset), column_of(r.network), r.region,
                     _fmt(r.mae_before, ".4f"), _fmt(r.mae_after, ".4f"), _fmt(r.change, "+.4f"),
                     _fmt(r.change_pct, "+.1f"), _fmt(r.px_before, ".2f"), _fmt(r.px_after, ".2f"),
                     _fmt(r.px_change, "+.2f"), _fmt(r.px_mean_shape, ".2f"), r.direction or "no data",
                     r.paper or "-",
                     f"{r.folds_used}/{r.folds_planned}", f"{r.models_used}/{r.models_planned}",
                     str(r.samples)])
    parts = [
        "Mean absolute difference between predicted and true landmark coordinates (Eq. 1) on "
        "each model's test faces. *Before*: the landmark stage's extractor and head; *after*: the "
        "fine-tuned extractor with the same stage-1 landmark head. Crop-normalised units ([0, 1]) "
        f"and pixels of the {CROP_SIZE}x{CROP_SIZE} crop; mean over a fold's models, then over "
        f"folds. A change within {100 * SAME_TOLERANCE:g}% of the before error reads "
        "\"about the same\". *Mean shape*: the error of predicting the training faces' mean "
        "points for every test face, the reference a landmark stage must beat. The paper "
        "(Section V-B, SFEW) gives directions only.\n",
        markdown_table(["data set", "network", "region", "before", "after", "change", "change %",
                        "before (px)", "after (px)", "change (px)", "mean shape (px)", "ours", "paper",
                        "folds", "models", "samples"], rows),
    ]
    notes = []
    for r in frame.itertuples(index=False):
        if r.missing_folds:
            notes.append(f"{display_name(r.dataset)} {r.network} {r.region}: no usable model in "
                         f"fold(s) {r.missing_folds.replace(' ', ', ')}; those folds are left out")
    unmatched = [m for m in study.models if m.unmatched]
    for m in unmatched:
        notes.append(f"{m.record.dataset} {m.record.network} {m.record.member} fold "
                     f"{m.record.fold}: {m.unmatched} test samples in only one stage's file "
                     "were left out")
    if notes:
        parts.append(bullets(notes))
    if study.rejected:
        rows = [[r.record.dataset, r.record.network, r.record.member, str(r.record.fold),
                 r.reason] for r in study.rejected]
        parts.append("**Models left out of the study** (their files are absent or unusable):\n")
        parts.append(markdown_table(["data set", "network", "member", "fold", "reason"], rows))
    return "\n".join(parts)


def write_landmark_tables(study: LandmarkStudy, out_dir: Path, plan: RunPlan | None = None
                          ) -> dict[str, Path]:
    """tables/landmarks.{csv,md} and landmarks_models.csv; nothing when no model has both stages."""
    if not study.planned:
        return {}
    out_dir = Path(out_dir)
    header = ["# Landmarks before and after fine-tuning (Sections IV-B, V-B)\n"]
    warning = warning_line(plan) if plan is not None else None
    if warning:
        header.append(warning + "\n")
    md = "\n".join(header) + "\n" + study_markdown(study)
    csv = lambda frame: frame.to_csv(index=False, float_format="%.6g",  # noqa: E731
                                     lineterminator="\n")
    return {
        "landmarks.csv": atomicio.write_text(out_dir / "landmarks.csv", csv(summary_frame(study))),
        "landmarks_models.csv": atomicio.write_text(out_dir / "landmarks_models.csv",
                                                  csv(models_frame(study))),
        "landmarks.md": atomicio.write_text(out_dir / "landmarks.md", md),
    }
