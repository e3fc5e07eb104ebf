"""`partfer export`: one trained ensemble of a run -> a self-contained model directory.

A run directory `<storage>/runs/<run_id>/` holds plan.json (orchestrator.records.RunPlan) and
config.yaml; each final model's outputs lie under the storage root at ModelRecord.dir. The storage
root is taken to be the run directory's grandparent when that holds the models (so a store that
was moved or copied still exports), else the root recorded in plan.json. A run directory given as
a URI (a store at an object store) is read from this machine's copy (orchestrator.storage.root.open_run).
Without --fold or --all-folds, the run's final model (trained on all subjects by `partfer run
--final`, recorded in final.json: orchestrator.execution.final) is exported when it has one, else fold 0.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from partfer.data_prep.errors import PreparedDataError
from partfer.data_prep.prepared import PREPARED_DIR, read_manifest
from partfer.data_prep.settings import PrepSettings
from partfer.models.config import ArchConfig, ArchitectureError
from partfer.models.subnet import SubNetwork
from partfer.orchestrator.execution.final import FINAL_FOLD, read_final
from partfer.orchestrator.storage.model_dir import MemberSpec, ModelSpec, write_model_dir
from partfer.orchestrator.networks import NETWORKS
from partfer.orchestrator.records import ModelRecord, RunPlan, main_models
from partfer.orchestrator.run_files import (CHECKPOINT_FILE, CONFIG_FILE, DONE_FILE, FINAL_FILE, PLAN_FILE,
                                           store_candidates)
from partfer.orchestrator.storage.root import open_run
from partfer.orchestrator.storage.store import safe_relative

class RunDirError(FileNotFoundError):
    """The run directory or its plan.json / config.yaml is missing."""


class ExportError(ValueError):
    """The run cannot provide the requested ensemble (unknown data set, network or fold; unfinished models)."""


@dataclass
class ExportResult:
    out: Path
    spec: ModelSpec


def _read_plan(run_dir: Path) -> tuple[RunPlan, dict]:
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    plan_path, config_path = run_dir / PLAN_FILE, run_dir / CONFIG_FILE
    for path in (plan_path, config_path):
        if not path.is_file():
            raise RunDirError(f"{run_dir} is not a run directory (no {path.name})")
    try:
        plan = RunPlan.from_json(plan_path.read_text())
    except (ValueError, KeyError, TypeError) as err:
        raise ExportError(f"{plan_path}: not a readable run plan ({type(err).__name__}: {err})") from None
    try:
        cfg = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ExportError(f"{config_path}: not valid YAML ({err})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise ExportError(f"{config_path} has no `model:` section")
    return plan, cfg


def storage_root(run_dir: Path, plan: RunPlan, records: list[ModelRecord]) -> Path:
    """The first of run_files.store_candidates that holds every one of `records`' model folders."""
    candidates = store_candidates(run_dir, plan.storage)
    for root in candidates:
        if all((root / r.dir).is_dir() for r in records):
            return root
    raise ExportError(f"the models of this run are not under {' nor '.join(str(c) for c in candidates) or plan.storage}"
                      f" (looked for {records[0].dir}); was the store moved without its models/ folder?")


def _member_order(plan: RunPlan, network: str) -> list[str]:
    spec = NETWORKS.get(network)
    return spec.member_names(plan.settings) if spec else []


def select_records(plan: RunPlan, dataset: str, network: str, fold: int | None,
                   all_folds: bool) -> tuple[list[ModelRecord], list[int], list[str]]:
    """The final models of (dataset, network) on the chosen folds, fold by fold in member order."""
    notes: list[str] = []
    if dataset not in plan.datasets:
        raise ExportError(f"run {plan.run_id} has no data set {dataset!r} (it has: {', '.join(sorted(plan.datasets))})")
    if network not in NETWORKS:
        raise ExportError(f"network must be one of {', '.join(NETWORKS)}, not {network!r}")
    ours = [r for r in main_models(plan) if r.dataset == dataset and r.network == network]
    if not ours:
        trained = sorted({r.network for r in plan.models if r.dataset == dataset})
        raise ExportError(f"run {plan.run_id} trained no {network} on {dataset} (it trained: {', '.join(trained)})")
    folds = list(plan.datasets[dataset].folds)
    if all_folds:
        if fold is not None:
            raise ExportError("give either a fold or all folds, not both")
        chosen = folds
    elif fold is None:
        chosen = folds[:1]
        notes.append(f"no fold given: exporting fold {chosen[0]} of {len(folds)} (--fold K for another, "
                     f"--all-folds for the {len(folds)}-fold ensemble); this run has no final model on all "
                     f"subjects (`partfer run --final` trains one)")
    elif fold not in folds:
        raise ExportError(f"{dataset} has folds {folds}, not {fold}")
    else:
        chosen = [fold]
    order = _member_order(plan, network)
    rank = {m: i for i, m in enumerate(order)}
    picked = sorted((r for r in ours if r.fold in chosen),
                    key=lambda r: (r.fold, rank.get(r.member, len(rank)), r.member))
    for r in picked:
        try:
            safe_relative(r.dir, f"run {plan.run_id}: plan.json's directory of {r.network} {r.member} fold {r.fold}")
        except ValueError as err:
            raise ExportError(str(err)) from None
    for k in chosen:
        if not any(r.fold == k for r in picked):
            raise ExportError(f"run {plan.run_id} has no {network} models of {dataset} fold {k}")
    return picked, chosen, notes


def final_records(plan: RunPlan, run_dir: Path, dataset: str, network: str) -> list[ModelRecord]:
    """The run's final models of (dataset, network) in member order ([] when it has none)."""
    rank = {m: i for i, m in enumerate(_member_order(plan, network))}
    picked = sorted((r for r in read_final(run_dir) if r.dataset == dataset and r.network == network),
                    key=lambda r: (rank.get(r.member, len(rank)), r.member))
    for r in picked:
        try:
            safe_relative(r.dir, f"{run_dir / FINAL_FILE}: the directory of {r.network} {r.member}")
        except ValueError as err:
            raise ExportError(str(err)) from None
    return picked


def _preprocessing(plan: RunPlan, dataset: str, storage: Path) -> tuple[dict, str, list[str]]:
    """The prepared data's PrepSettings (from its manifest.json); the run's `prep` if it is gone."""
    recorded = Path(plan.datasets[dataset].prepared)
    for folder in (storage / PREPARED_DIR / recorded.name, recorded):
        try:
            settings = read_manifest(folder)["settings"]
        except (PreparedDataError, KeyError):
            continue
        return PrepSettings.from_dict(settings).to_dict(), str(folder / "manifest.json"), []
    prep = plan.settings.get("prep")
    if not isinstance(prep, dict):
        raise ExportError(f"neither the prepared data of {dataset} ({recorded}) nor the run's settings "
                          f"say how its images were preprocessed")
    note = (f"the prepared data's manifest was not found ({recorded}); preprocessing settings are "
            f"taken from the run's config, which is what prepared it unless --prepared was used")
    return PrepSettings.from_dict(prep).to_dict(), "run config (prep)", [note]


def _load_member(record: ModelRecord, storage: Path, n_classes: int, arch: ArchConfig) -> tuple[dict, float | None]:
    """The checkpoint's extractor + classifier, checked against the architecture."""
    folder = storage / record.dir
    path = folder / CHECKPOINT_FILE
    if not (folder / DONE_FILE).is_file() or not path.is_file():
        raise ExportError(f"{record.network} {record.member} fold {record.fold} is not finished "
                          f"({path} missing); finish the run by running the same command again")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:     # a damaged file raises many types
        raise ExportError(f"{path}: cannot read the checkpoint ({type(err).__name__}: {err})") from None
    # The landmark head only served pre-training: prediction needs the extractor and classifier.
    state = {k: v for k, v in state.items() if not k.startswith("landmark_head.")}
    net = SubNetwork.from_arch(n_classes, None, arch, seed=0)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ExportError(f"{path} does not fit the run's architecture "
                          f"({str(err).strip().splitlines()[0]})") from None
    try:
        meta = json.loads((folder / DONE_FILE).read_text())
        test_acc = meta.get("test_acc") if meta.get("n_test") != 0 else None   # a final model tests nothing
    except (ValueError, AttributeError):
        test_acc = None
    return net.state_dict(), test_acc


def export_model(run_dir: str | Path, dataset: str, network: str, out: str | Path, fold: int | None = None,
                 all_folds: bool = False, log=None) -> ExportResult:
    """Write the ensemble of (dataset, network) on one fold, or on every fold, to `out`."""
    log = log or (lambda text: print(f"partfer export: note: {text}", file=sys.stderr))
    try:
        run = open_run(run_dir)           # a URI: this machine's copy of the run
    except FileNotFoundError as err:
        raise RunDirError(str(err)) from None
    uri, run_dir = run.remote, run.local
    plan, cfg = _read_plan(run_dir)
    finals = final_records(plan, run_dir, dataset, network) if fold is None and not all_folds else []
    if finals:
        records, folds = finals, [FINAL_FOLD]
        notes = ["exporting the final model, trained on all subjects (--fold K or --all-folds for the "
                 "cross-validated models)"]
    else:
        records, folds, notes = select_records(plan, dataset, network, fold, all_folds)
    for r in records:             # a run's copy leaves checkpoints (and final models) out: fetch the chosen ones
        run.fetch(r.dir, (CHECKPOINT_FILE, DONE_FILE))
    storage = storage_root(run_dir, plan, records)
    try:
        arch = ArchConfig.from_config(cfg["model"])
    except (KeyError, TypeError, ArchitectureError) as err:
        raise ExportError(f"{run_dir / 'config.yaml'}: `model:` does not describe the network ({err})") from None
    classes = list(plan.datasets[dataset].classes)
    preprocessing, prep_source, prep_notes = _preprocessing(plan, dataset, storage)
    notes += prep_notes
    states, members = {}, []
    for r in records:
        name = f"{r.member}_f{r.fold}" if len(folds) > 1 else r.member
        states[name], test_acc = _load_member(r, storage, len(classes), arch)
        members.append(MemberSpec(name=name, member=r.member, fold=r.fold,
                                  region=NETWORKS[network].region_of(r.member), stage=r.stage, key=r.key,
                                  source=r.dir, test_acc=test_acc))
    image_size = int(plan.settings.get("image_size") or cfg.get("image_size"))
    run_info = {k: plan.settings.get(k) for k in ("config_name", "shrunk", "shrunk_reasons", "synthetic",
                                                   "seed", "status", "epochs_scale")}
    run_info.update(run_id=plan.run_id, run_dir=uri or str(run_dir.resolve()),
                    storage=plan.storage if uri else str(storage),
                    exported=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    spec = ModelSpec(dataset=dataset, network=network, classes=classes, members=members, folds=folds,
                     image_size=image_size, architecture=arch.to_dict(), preprocessing=preprocessing,
                     model_config=dict(cfg["model"]), preprocessing_source=prep_source, run=run_info,
                     notes=notes)
    path = write_model_dir(out, spec, states)
    for note in notes:
        log(note)
    return ExportResult(out=path, spec=spec)


