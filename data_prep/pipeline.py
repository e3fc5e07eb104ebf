"""Raw data sets -> prepared Parquet directories, with Ray Data doing the per-image work.

All requested data sets go through ONE Ray Dataset (their records tagged by name), so a small
set does not wait for a large one and every CPU in the cluster stays busy. Each actor loads its
detector and annotator once (data_prep.detectors / annotators cache per process). The driver
streams the results into one content-addressed directory per data set (see prep_store).
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from partfer.data_prep.annotators.base import get_annotator_spec, load_annotator
from partfer.data_prep.detectors.base import get_detector_spec, load_detector
from partfer.data_prep.errors import EmptyDatasetError, RejectError
from partfer.data_prep.file_names import name_hex, name_text, original_name
from partfer.data_prep.fingerprint import input_fingerprint, load_cache, save_cache
from partfer.data_prep.prep_store import (
    PreparedBuilder, check_name, content_hash, hash_inputs, prepared_path,
    write_rejects_csv,
)
from partfer.data_prep.prepared import check_counts, read_manifest, read_subjects
from partfer.data_prep import ray_console
from partfer.data_prep.private_ray import bound_oom_retries, start_private_ray
from partfer.data_prep.readers.base import ReadResult, Record, Reject, read_dataset
from partfer.data_prep.schema import SCHEMA, SUCCESS_MARKER
from partfer.data_prep.settings import PrepSettings

__all__ = ["PrepSettings", "PrepRequest", "PreparedInfo", "prepare_datasets", "prepare_dataset",
           "ensure_ray"]

BATCH_SIZE = 16
# What an actor returns per input: the schema row (nulls for a reject) plus routing and stats.
OUTPUT_SCHEMA = pa.schema(
    [pa.field(f.name, f.type, nullable=True) for f in SCHEMA]
    + [pa.field("request", pa.string()), pa.field("reject_reason", pa.string()),
       pa.field("clipped_points", pa.int32())]
)


@dataclass(frozen=True)
class PrepRequest:
    """One data set to prepare: its name (folder and `dataset` column), layout, root, settings,
    and layout options for its reader (e.g. {"subject_regex": "^(S\\d+)_"} for 'folder')."""
    name: str
    layout: str
    root: str
    settings: PrepSettings = PrepSettings()
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedInfo:
    name: str
    path: str
    n_ok: int
    n_rejected: int
    reused: bool
    classes: list[str]


@dataclass
class _Plan:
    request: PrepRequest
    read: ReadResult
    inputs: dict
    digest: str
    final: Path


def ensure_ray(address: str | None = None) -> None:
    """Connect to `address`, or start a private local Ray on all CPUs (closed to the network:
    data_prep.private_ray) when none is running."""
    import ray

    if ray.is_initialized():
        return
    bound_oom_retries()
    if address is not None:
        ray.init(address=address)   # the cluster's own auth settings apply
        return
    start_private_ray()


@functools.lru_cache(maxsize=64)
def _settings(settings_json: str) -> PrepSettings:
    return PrepSettings.from_dict(json.loads(settings_json))


def _one_line(err: Exception) -> str:
    return re.sub(r"\s+", " ", str(err)).strip()


class PrepareBatch:
    """Ray Data callable class: one instance per actor, models loaded on first use and kept."""

    def __init__(self) -> None:
        import cv2

        cv2.setNumThreads(1)   # one CPU per actor: OpenCV's own threads would oversubscribe it
        self._cv2_error = cv2.error

    def __call__(self, batch: pa.Table) -> pa.Table:
        from partfer.data_prep.preprocess import prepare_row

        out = []
        for item in batch.to_pylist():
            settings = _settings(item["settings"])
            record = Record(**json.loads(item["record"]))
            detector = load_detector(settings.detector, settings)
            annotator = load_annotator(settings.annotator, settings)
            try:
                row, clipped = prepare_row(record, detector, annotator, settings, dataset=item["request"])
                out.append({**row, "request": item["request"], "reject_reason": None, "clipped_points": clipped})
            except (RejectError, self._cv2_error) as err:
                reason = _one_line(err) if isinstance(err, RejectError) else f"OpenCV error: {_one_line(err)}"
                out.append({"source_path": name_text(record.rel_path),
                            "source_path_hex": name_hex(record.rel_path) or None, "request": item["request"],
                            "reject_reason": name_text(reason), "clipped_points": 0})
        return pa.Table.from_pylist(out, schema=OUTPUT_SCHEMA)


def _plan(request: PrepRequest, out_root: str, digests: dict) -> _Plan:
    check_name(request.name)
    get_detector_spec(request.settings.detector)       # unknown names fail before any work
    get_annotator_spec(request.settings.annotator)
    read = read_dataset(request.layout, request.root, **request.options)
    root = str(Path(request.root).expanduser().resolve())
    if not read.records:
        example = (f"; e.g. {name_text(read.rejects[0].source_path)}: {name_text(read.rejects[0].reason)}"
                   if read.rejects else "")
        raise EmptyDatasetError(f"data set {request.name!r}: no usable images under {root} with layout "
                                f"{request.layout!r} ({len(read.rejects)} file{'' if len(read.rejects) == 1 else 's'} rejected{example})")
    inputs = hash_inputs(request.name, request.layout, dict(request.options), request.settings.to_dict(),
                         input_fingerprint(root, digests))
    digest = content_hash(inputs)
    return _Plan(request, read, inputs, digest, prepared_path(out_root, request.name, digest))


def _reused(plan: _Plan) -> PreparedInfo:
    manifest = read_manifest(plan.final)
    check_counts(plan.final, manifest, read_subjects(plan.final))     # its count is printed below
    return PreparedInfo(plan.request.name, str(plan.final), manifest["n_ok"], manifest["n_rejected"],
                        True, manifest["classes"])


def _items(plan: _Plan) -> list[dict]:
    """One item per record. The record travels as JSON: its paths may hold surrogate escapes (names
    that are not UTF-8), which Arrow cannot store and JSON's \\udcXX escapes carry exactly."""
    settings_json = json.dumps(plan.request.settings.to_dict(), sort_keys=True)
    return [{"record": json.dumps(asdict(r)), "request": plan.request.name, "settings": settings_json}
            for r in plan.read.records]


def _run_ray(plans: list[_Plan], builders: dict[str, PreparedBuilder], batch_size: int, progress: bool,
             this_node: bool = False) -> None:
    """One Ray Data job over all plans' records; results streamed into their builders. With
    `this_node`, every actor runs on the driver's node (inputs only this machine has)."""
    import ray

    items = [item for plan in plans for item in _items(plan)]
    n_batches = math.ceil(len(items) / batch_size)
    resources = None
    if this_node:
        node = f"node:{ray.util.get_node_ip_address()}"       # every node has one such resource
        resources = {node: 0.001}
        n_cpus = max(1, int(next((n["Resources"].get("CPU", 1) for n in ray.nodes()
                                  if n["Alive"] and node in n["Resources"]), 1)))
    else:
        n_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    dataset = ray.data.from_items(items, override_num_blocks=n_batches).map_batches(
        PrepareBatch, batch_size=batch_size, batch_format="pyarrow", num_cpus=1, resources=resources,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, min(n_cpus, n_batches))),
    )
    ray_console.apply()                  # ray.data configured its loggers when imported
    context = ray.data.DataContext.get_current()
    previous, context.enable_progress_bars = context.enable_progress_bars, progress
    try:
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            _route(batch, builders)
    finally:
        context.enable_progress_bars = previous


def _route(batch: pa.Table, builders: dict[str, PreparedBuilder]) -> None:
    """Split one result block by data set, and within it into accepted rows and rejects."""
    for name, builder in builders.items():
        mine = batch.filter(pc.equal(batch.column("request"), name))
        if mine.num_rows == 0:
            continue
        rejected = pc.is_valid(mine.column("reject_reason"))
        bad = mine.filter(rejected)
        builder.add_rejects([Reject(original_name(p, h), r) for p, h, r in zip(
            bad.column("source_path").to_pylist(), bad.column("source_path_hex").to_pylist(),
            bad.column("reject_reason").to_pylist())])
        good = mine.filter(pc.invert(rejected))
        builder.add_rows(good, good.column("clipped_points").to_pylist())


def _base_manifest(plan: _Plan) -> dict:
    request = plan.request
    return {
        "name": request.name, "layout": request.layout,
        "root": str(Path(request.root).expanduser().resolve()),
        "options": dict(request.options), "settings": request.settings.to_dict(),
        "notes": list(plan.read.notes), "n_rejected_by_reader": len(plan.read.rejects),
        "hash": plan.digest, "hash_inputs": plan.inputs,
    }


def prepare_datasets(requests: list[PrepRequest], out_root: str | os.PathLike, ray_address: str | None = None,
                     progress: bool = True, batch_size: int = BATCH_SIZE,
                     this_node: bool = False,
                     fetch: Callable[[Path], bool] | None = None) -> dict[str, PreparedInfo]:
    """Prepare every requested data set (reusing finished ones); name -> PreparedInfo.

    `this_node`: the raw files exist on this machine only (e.g. generated into a local cache), so
    the per-image work runs on this node's CPUs; otherwise anywhere in the cluster, and the roots
    must be readable at the same path on every node.
    `fetch(final)`: asked for each data set not finished under out_root before preparing it; it
    may put a finished copy of that directory there (from a remote store) and return True.

    Raises DatasetRootError / EmptyDatasetError / ModelFileError / ValueError for whole-run
    problems; per-file problems end up in each data set's rejects.csv.
    """
    names = [r.name for r in requests]
    if len(set(names)) != len(names):
        raise ValueError(f"data set names must be unique, got {names}")
    out_root = str(Path(out_root).expanduser().resolve())
    digests = load_cache()               # files read before: not read again
    plans = [_plan(request, out_root, digests) for request in requests]
    save_cache(digests)
    infos = {p.request.name: _reused(p) for p in plans
             if (p.final / SUCCESS_MARKER).is_file() or (fetch is not None and fetch(p.final))}
    todo = [p for p in plans if p.request.name not in infos]
    if not todo:
        return infos
    for plan in todo:   # load models once here: a missing model file stops the run before Ray starts
        load_detector(plan.request.settings.detector, plan.request.settings)
        load_annotator(plan.request.settings.annotator, plan.request.settings)
    ensure_ray(ray_address)
    builders: dict[str, PreparedBuilder] = {}
    try:
        for plan in todo:
            builders[plan.request.name] = PreparedBuilder(plan.final)
            builders[plan.request.name].add_rejects(plan.read.rejects)
        _run_ray(todo, builders, batch_size, progress, this_node)
        failed = []
        for plan in todo:
            builder = builders[plan.request.name]
            if builder.n_ok == 0:
                rejects_path = plan.final.with_name(f"{plan.final.name}.rejects.csv")
                write_rejects_csv(rejects_path, builder.rejects)
                builder.discard()
                failed.append(f"data set {plan.request.name!r}: every image was rejected "
                              f"({len(builder.rejects)}); reasons in {rejects_path}")
                continue
            manifest = builder.publish(_base_manifest(plan))
            infos[plan.request.name] = PreparedInfo(plan.request.name, str(plan.final), manifest["n_ok"],
                                                    manifest["n_rejected"], False, manifest["classes"])
        if failed:
            raise EmptyDatasetError("; ".join(failed))
    finally:
        for builder in builders.values():   # published ones have no temp folder left; others go
            builder.discard()
    return {name: infos[name] for name in names if name in infos}


def prepare_dataset(request: PrepRequest, out_root: str | os.PathLike, **kwargs) -> PreparedInfo:
    """One data set; see prepare_datasets."""
    return prepare_datasets([request], out_root, **kwargs)[request.name]
