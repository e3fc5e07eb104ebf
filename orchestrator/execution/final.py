"""The final model: each network's ensemble trained on ALL of a data set's subjects, for use.

A cross-validated run measures; none of its models saw every subject. `partfer run --final` trains,
after it, one more model per member (fold FINAL_FOLD = -1, protocol "all"): its training rows are
every row of the data set; it has no validation and no test rows, so it keeps its last epoch
(selection `last`, no early stopping).

Its stage epochs are the ones the cross-validated run chose: for each (data set, network, stage),
the median over folds and members of `selected_epoch` in the meta.json of the run's models of its
main selection (train.selection), rounded half up, at least 1. Under selection `last` without
patience that is the stage's cap; under `evaluated_fold` or `heldout_subjects` it is the epoch the
selection typically kept. One number per network and stage, since a pack trains its models for
one epoch count; a network's members are packed together, apart from the other networks.

The final models are recorded in `<run_dir>/final.json` (FINAL_FILE), not in plan.json, whose
models results/ scores fold by fold; `partfer export` takes them by default.
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from partfer.data_prep.prepared import PreparedData
from partfer.orchestrator.execution.executor import make_executor
from partfer.orchestrator.execution.folds import FoldSplit
from partfer.orchestrator.execution.plan import Unit, exec_settings, precision_for, result_settings, stage_settings, unit_seed
from partfer.orchestrator.execution.progress import Progress
from partfer.orchestrator.networks import NETWORKS
from partfer.orchestrator.records import ModelRecord, RunPlan, main_models
from partfer.orchestrator.run_files import FINAL_FILE, PLAN_FILE
from partfer.orchestrator.storage.store import (DONE_FILE, atomic_write_text, basename, is_done, join, local_file, model_dir,
                                open_prepared, relative, stable_hash, stored)
from partfer.orchestrator.training.jobs import ModelJob, PackJob, PackResult, job_done

FINAL_FOLD = -1
FINAL_PROTOCOL = "all"
FINAL_SELECTION = "last"


class FinalModelError(ValueError):
    """The cross-validated run cannot say how long to train a final model."""


@dataclass
class FinalPlan:
    chains: list[list[PackJob]]
    records: list[ModelRecord]
    epochs: dict            # {dataset: {network: {stage: epochs}}}
    selected: dict          # {dataset: {network: {stage: [selected_epoch of each CV model]}}}
    selection: str          # the CV selection the epochs come from
    n_model_stages: int
    n_done: int


def median_epoch(values: list[int]) -> int:
    """The median, rounded half up, at least 1."""
    return max(1, math.floor(statistics.median(values) + 0.5))


def chosen_epochs(run_plan: RunPlan, storage: str, dataset: str, network: str) -> tuple[dict, dict]:
    """Each stage's final epochs and the CV models' selected epochs they are the median of."""
    records = [r for r in main_models(run_plan) if r.dataset == dataset and r.network == network]
    if not records:
        raise FinalModelError(f"run {run_plan.run_id} trained no {network} on {dataset} to take epochs from")
    epochs, selected = {}, {}
    for stage in NETWORKS[network].stages:
        values = []
        for r in records:
            where = join(storage, r.stage_dirs.get(stage, r.dir), DONE_FILE)
            path = local_file(where, missing_ok=True)
            if path is None:
                raise FinalModelError(f"{where} is missing: the cross-validated {network} {r.member} fold "
                                      f"{r.fold} {stage} is not finished")
            try:
                values.append(int(json.loads(path.read_text())["selected_epoch"]))
            except (ValueError, KeyError, TypeError) as err:
                raise FinalModelError(f"{where}: no selected_epoch ({type(err).__name__}: {err})") from None
        epochs[stage], selected[stage] = median_epoch(values), values
    return epochs, selected


def _all_rows(data: PreparedData, stage: str) -> FoldSplit:
    """Every row for training (the landmark stage: those with real landmarks); none to test."""
    rows = np.arange(len(data.sample_ids))
    if stage == "landmark":
        rows = rows[np.asarray(data.landmarks_ok, bool)]
    empty = np.zeros(0, np.int64)
    return FoldSplit(FINAL_FOLD, rows, empty, empty)


def _units(cfg: dict, dataset: str, network: str) -> list[Unit]:
    return [Unit(dataset, network, member, FINAL_FOLD, region)
            for member, region in NETWORKS[network].members(cfg)]


def build_final(cfg: dict, prepared: dict[str, PreparedData], storage: str, device: str, run_plan: RunPlan,
                pack_size: int) -> FinalPlan:
    """Every final model's stage jobs, keyed like the run's models (their own keys: fold -1)."""
    precision = precision_for(cfg, device)
    execution = exec_settings(cfg, device)
    chains, records = [], []
    all_epochs: dict = {}
    all_selected: dict = {}
    n_total = n_done = 0
    for name, data in prepared.items():
        for network in cfg["networks"]:
            epochs, selected = chosen_epochs(run_plan, storage, name, network)
            all_epochs.setdefault(name, {})[network] = epochs
            all_selected.setdefault(name, {})[network] = selected
            units = _units(cfg, name, network)
            for start in range(0, len(units), pack_size):
                chunk = units[start:start + pack_size]
                chain, upstream = [], {u: None for u in chunk}
                stage_dirs: dict[Unit, dict[str, str]] = {u: {} for u in chunk}
                for stage in NETWORKS[network].stages:
                    settings = dataclasses.replace(stage_settings(cfg, name, stage, FINAL_SELECTION),
                                                   max_epochs=epochs[stage], patience=None)
                    split = _all_rows(data, stage)
                    jobs = []
                    for u in chunk:
                        key_inputs = {
                            "prepared": basename(data.path), "dataset": name, "network": u.network,
                            "member": u.member, "fold": u.fold, "region": u.region,
                            "seed": unit_seed(cfg, u), "stage": result_settings(settings),
                            "model": cfg["model"], "image_size": int(cfg["image_size"]),
                            "classes": list(data.classes), "protocol": [FINAL_PROTOCOL, None],
                            "val_fraction": 0.0, "precision": precision,
                            "upstream": upstream[u][0] if upstream[u] else None,
                        }
                        key = stable_hash(key_inputs, 32)
                        out = model_dir(storage, name, u.network, u.member, u.fold, stage, key)
                        jobs.append(ModelJob(
                            key=key, out_dir=out, seed=unit_seed(cfg, u), region=u.region, fold=u.fold,
                            train=tuple(split.train.tolist()), val=(), test=(),
                            upstream_dir=upstream[u][1] if upstream[u] else None,
                            meta={"dataset": name, "network": u.network, "member": u.member, "fold": u.fold,
                                  "region": u.region, "selection": FINAL_SELECTION, "final": True,
                                  "epochs_from": {"selection": run_plan.settings.get("selection"),
                                                  "selected_epochs": selected[stage]},
                                  "inputs": key_inputs}))
                        upstream[u] = (key, out)
                        stage_dirs[u][stage] = relative(out, storage)
                        n_total += 1
                        n_done += is_done(out)
                    chain.append(PackJob(
                        dataset=name, prepared_dir=str(data.path), classes=tuple(data.classes), stage=settings,
                        models=tuple(jobs), model_cfg=dict(cfg["model"]), image_size=int(cfg["image_size"]),
                        device=device, precision=precision,
                        state_dir=join(storage, "packs", stable_hash([j.key for j in jobs], 24)),
                        execution=execution))
                while chain and all(job_done(j) for j in chain[0].models):
                    chain.pop(0)
                if chain:
                    chains.append(chain)
                for u in chunk:
                    key, out = upstream[u]
                    records.append(ModelRecord(dataset=name, network=u.network, member=u.member, fold=u.fold,
                                               stage=u.stages[-1], key=key, dir=relative(out, storage),
                                               stage_dirs=stage_dirs[u], selection=FINAL_SELECTION))
    chains.sort(key=len, reverse=True)
    return FinalPlan(chains, records, all_epochs, all_selected, str(run_plan.settings.get("selection")),
                     n_total, n_done)


def train_final(cfg: dict, prepared: dict[str, PreparedData], storage: str, device: str, run_plan: RunPlan,
                pack_size: int, run_dir: Path, executor: str, log) -> list[PackResult]:
    """Plan, train and record the final models of a run whose cross-validated models are done."""
    final = build_final(cfg, prepared, storage, device, run_plan, pack_size)
    for name, networks in final.epochs.items():
        for network, epochs in networks.items():
            log(f"final {network} on all {name} subjects: epochs {epochs} (median selected epoch of the "
                f"cross-validated run's {final.selection} models)")
    # their epochs join the run's metrics CSV and TensorBoard files (fold -1)
    progress = Progress(final.n_model_stages, final.n_done, sum(len(c) for c in final.chains), run_dir=run_dir)
    # a final model is a handful of packs: the run's executor hands them on where that is cheaper
    results = (make_executor(executor, cfg, storage, device, few_packs=True).run_chains(final.chains, progress)
               if final.chains else [])
    write_final(run_dir, run_plan.run_id, final)
    log(f"final models of {len(final.records)} members -> {Path(run_dir) / FINAL_FILE}")
    return results


def train_final_for_run(run_dir: str | Path, cfg: dict, log=None) -> list[PackResult]:
    """`partfer run --final`: the final models of a finished run directory, on the store, device,
    executor and pack size it ran with (plan.json's settings)."""
    log = log or (lambda text: print(f"[partfer] {text}", flush=True))
    run_dir = Path(run_dir)
    run_plan = RunPlan.from_json((run_dir / PLAN_FILE).read_text())
    if run_plan.settings.get("status") != "finished":
        raise FinalModelError(f"{run_dir}: the cross-validated run is not finished "
                              f"(status {run_plan.settings.get('status')!r}); run the same command again")
    settings = run_plan.settings
    prepared = {name: open_prepared(stored(run_plan.storage, info.prepared))
                for name, info in run_plan.datasets.items()}
    return train_final(cfg, prepared, run_plan.storage, str(settings["device"]), run_plan,
                       int(settings["pack_size"]), run_dir, str(settings["executor"]), log)


def write_final(run_dir: Path, run_id: str, final: FinalPlan) -> None:
    atomic_write_text(Path(run_dir) / FINAL_FILE, json.dumps({
        "run_id": run_id, "fold": FINAL_FOLD, "protocol": FINAL_PROTOCOL,
        "epochs_rule": "median over folds and members of the main selection's selected_epoch, rounded half up",
        "selection": final.selection, "epochs": final.epochs, "selected_epochs": final.selected,
        "models": [asdict(r) for r in final.records]}, indent=2, sort_keys=True))


def read_final(run_dir: str | Path) -> list[ModelRecord]:
    """The final models a run recorded ([] when it trained none)."""
    path = Path(run_dir) / FINAL_FILE
    if not path.is_file():
        return []
    try:
        return [ModelRecord(**m) for m in json.loads(path.read_text())["models"]]
    except (ValueError, KeyError, TypeError) as err:
        raise FinalModelError(f"{path}: not a readable record of final models ({type(err).__name__}: {err})") from None
