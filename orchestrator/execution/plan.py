"""Config + prepared data sets -> every model's stages, keyed, and grouped into packs.

A unit is one model followed through its stages (orchestrator.networks: Baseline members train
"baseline"; FTL members and EL parts "landmark" -> "head" -> "finetune"). Units of one data set
and one stage sequence are cut into chunks of `pack_size`; each chunk becomes a chain of packs, one
per stage and selection, where stage s+1 starts from stage s's checkpoints. A selection's stage
whose training is the same as the main selection's (same rows, seed and upstream: only the kept
epoch differs) is not trained twice: the main pack keeps both models.
Keys hash everything a stage's result depends on, so a re-run (or a sweep that changes only the
fine-tuning rate) finds finished stages on disk and skips them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path

from partfer.data_prep.prepared import PreparedData
from partfer.models.stages import FROZEN_BN_STAGES
from partfer.models.options import ExecOptions
from partfer.orchestrator.config import compile_mode_of, epochs_for, selections_of, without_added_defaults
from partfer.orchestrator.evaluation.cross_eval import CrossEvalJob
from partfer.orchestrator.execution.folds import FoldSplit, fold_ids, make_split
from partfer.orchestrator.networks import NETWORKS, stage_sequences
from partfer.orchestrator.records import DatasetInfo, ModelRecord, RunPlan
from partfer.orchestrator.storage.root import open_store
from partfer.orchestrator.storage.store import basename, is_done, join, model_dir, relative, scan_done, stable_hash
from partfer.orchestrator.training.jobs import (AugmentSettings, ExecSettings, ModelJob, PackJob, SharedOutput,
                                                StageSettings, job_done, kept_settings)


@dataclass(frozen=True)
class Unit:
    dataset: str
    network: str
    member: str
    fold: int
    region: str | None

    @property
    def stages(self) -> tuple[str, ...]:
        return NETWORKS[self.network].stages


@dataclass
class Plan:
    run_plan: RunPlan
    chains: list[list[PackJob]]          # each chain: one pack per stage, in stage order
    n_model_stages: int
    n_done: int
    cross_evals: list[CrossEvalJob] = field(default_factory=list)   # after training
    finished_state_dirs: list[str] = field(default_factory=list)    # resumable states of done packs


def units_for(cfg: dict, dataset: str, folds: list[int]) -> list[Unit]:
    """Every (network, member, fold) of a data set, in the config's network order."""
    return [Unit(dataset, network, member, fold, region)
            for network in cfg["networks"] for member, region in NETWORKS[network].members(cfg)
            for fold in folds]


def stage_settings(cfg: dict, dataset: str, stage: str, selection: str | None = None) -> StageSettings:
    """A stage's training settings; `selection` overrides train.selection (the no-peeking twin)."""
    tr = cfg["train"]
    patience, steps = tr["patience"], tr["steps_per_epoch"]
    return StageSettings(
        stage=stage, lr=float(tr["lr"][stage]), max_epochs=epochs_for(cfg, dataset, stage),
        patience=None if patience is None else int(patience), min_delta=float(tr["min_delta"]),
        selection=selection or tr["selection"], batch_size=int(tr["batch_size"]),
        steps_per_epoch=None if steps is None else int(steps),
        frozen_bn=stage in FROZEN_BN_STAGES and tr["transfer_bn"] == "frozen",
        class_balanced=bool(tr["class_balanced"]), augment=AugmentSettings.from_config(tr["augment"]),
        adam={k: float(v) for k, v in tr["adam"].items()}, eval_every=int(cfg["eval_every"]),
        checkpoint_every=int(tr["checkpoint_every"]),
        checkpoint_seconds=float(tr["checkpoint_seconds"]),
        compact_stopped=bool(tr["compact_stopped"]), recalibrate_bn=bool(tr["recalibrate_bn"]),
        landmark_targets=tr["landmark_targets"] if stage == "landmark" else "crop")


# Resume bookkeeping: changing it changes no result, so it is not part of a model's key.
_BOOKKEEPING = ("checkpoint_every", "checkpoint_seconds")


def result_settings(settings: StageSettings) -> dict:
    """The stage settings that can change what a model learns (its key's share of them), as the
    model its selection keeps has them (jobs.kept_settings). A setting added after stores were
    written stays out at its default (config.ADDED_AT_DEFAULT): a model trained with it there is
    the model trained before it existed, and those stores' models are still found."""
    kept = kept_settings(settings, settings.selection)
    return without_added_defaults({k: v for k, v in asdict(kept).items() if k not in _BOOKKEEPING})


def unit_seed(cfg: dict, unit: Unit) -> int:
    return int(stable_hash([cfg["seed"], unit.dataset, unit.network, unit.member, unit.fold], 12), 16)


def precision_for(cfg: dict, device: str) -> str:
    want = cfg["train"]["precision"]
    if want == "auto":
        return "bf16" if device.startswith("cuda") else "fp32"
    return want


def exec_settings(cfg: dict, device: str) -> ExecSettings:
    """How a pack executes (none of it is part of any key): memory layout, determinism,
    compilation and the custom kernels' switches, which act where the pack runs ("auto": on CUDA)."""
    tr = cfg["train"]
    channels_last = device.startswith("cuda") if tr["channels_last"] == "auto" else bool(tr["channels_last"])
    return ExecSettings(channels_last=channels_last, deterministic=bool(tr["deterministic"]),
                        cudnn_benchmark=bool(tr["cudnn_benchmark"]), compile=compile_mode_of(cfg),
                        fused_augment="auto" if tr["fused_augment"] else "off",
                        network=ExecOptions(fuse="auto" if tr["fused_bn"] else "off"))


def build_plan(cfg: dict, prepared: dict[str, PreparedData], storage: str, device: str,
               run_id: str, pack_size: int) -> Plan:
    """Every unit's stage jobs, with their keys, inputs and output directories."""
    store = open_store(storage)
    storage = store.root
    scan_done(storage)
    precision = precision_for(cfg, device)
    execution = exec_settings(cfg, device)
    chains: list[list[PackJob]] = []
    stale_states: list[str] = []
    records: list[ModelRecord] = []
    infos: dict[str, DatasetInfo] = {}
    n_total = n_done = 0
    for name, data in prepared.items():
        ds_cfg = cfg["datasets"][name]
        protocol, n_folds = ds_cfg["protocol"], ds_cfg.get("folds")
        folds = fold_ids(data.subjects, protocol, n_folds)
        prep_hash = basename(data.path)
        # training subjects are held out only when they choose the kept epoch
        val_fractions = {sel: float(cfg["train"]["val_subject_fraction"]) if sel == "heldout_subjects" else 0.0
                         for sel in selections_of(cfg)}
        splits_of = {sel: {f: make_split(data.subjects, data.splits, protocol, n_folds, f, fraction, int(cfg["seed"]))
                           for f in folds}
                     for sel, fraction in val_fractions.items()}
        # the protocol's test rows, all folds together (Table I's denominator): the same under any selection
        test_rows = sum(len(split.test) for split in next(iter(splits_of.values())).values())
        infos[name] = DatasetInfo(name=name, classes=list(data.classes), protocol=protocol, folds=folds,
                                  prepared=store.recorded(data.path), n_samples=len(data.sample_ids),
                                  test_rows=test_rows)
        units = units_for(cfg, name, folds)
        selections = list(val_fractions)            # the main one first
        chosen: dict[str, list[ModelRecord]] = {sel: [] for sel in selections}
        for seq in stage_sequences():
            group = [u for u in units if u.stages == seq]
            for start in range(0, len(group), pack_size):
                chunk = group[start:start + pack_size]
                # a chain per selection, except where the twin's training is the main one's (same
                # trajectory): there the main pack keeps the twin's models too, and the twin's
                # later stages follow in the main chain
                lines: list[list[dict]] = []         # the chunk's chains of packs
                host: dict[str, dict] = {}           # stage -> the main selection's pack
                for selection in selections:
                    line: list[dict] = []
                    val_fraction, splits = val_fractions[selection], splits_of[selection]
                    upstream = {u: None for u in chunk}
                    stage_dirs: dict[Unit, dict[str, str]] = {u: {} for u in chunk}
                    for stage in seq:
                        settings = stage_settings(cfg, name, stage, selection)
                        jobs, trajectories = [], []
                        for u in chunk:
                            split = _with_targets(splits[u.fold], data) if stage == "landmark" else splits[u.fold]
                            key_inputs = {
                                "prepared": prep_hash, "dataset": name, "network": u.network,
                                "member": u.member, "fold": u.fold, "region": u.region,
                                "seed": unit_seed(cfg, u), "stage": result_settings(settings),
                                "model": cfg["model"], "image_size": int(cfg["image_size"]),
                                "classes": list(data.classes), "protocol": [protocol, n_folds],
                                "val_fraction": val_fraction,
                                "precision": precision,
                                "upstream": upstream[u][0] if upstream[u] else None,
                            }
                            key = stable_hash(key_inputs, 32)
                            out = model_dir(storage, name, u.network, u.member, u.fold, stage, key)
                            jobs.append(ModelJob(
                                key=key, out_dir=out, seed=unit_seed(cfg, u), region=u.region, fold=u.fold,
                                train=tuple(split.train.tolist()), val=tuple(split.val.tolist()),
                                test=tuple(split.test.tolist()),
                                upstream_dir=upstream[u][1] if upstream[u] else None,
                                meta={"dataset": name, "network": u.network, "member": u.member,
                                      "fold": u.fold, "region": u.region, "selection": selection,
                                      "inputs": key_inputs}))
                            trajectories.append(trajectory_key(key_inputs))
                            upstream[u] = (key, out)
                            stage_dirs[u][stage] = relative(out, storage)
                            n_total += 1
                            n_done += is_done(out)
                        main = host.get(stage)
                        if main is not None and main["trajectories"] == trajectories:
                            main["shared"].append(jobs)
                            line = lines[0]              # its later stages wait for the shared pack
                        else:
                            pack = {"settings": settings, "jobs": jobs, "trajectories": trajectories, "shared": []}
                            line.append(pack)
                            host.setdefault(stage, pack)
                    if line is not (lines[0] if lines else None):
                        lines.append(line)
                    for u in chunk:
                        key, out = upstream[u]
                        chosen[selection].append(ModelRecord(dataset=name, network=u.network, member=u.member,
                                                   fold=u.fold, stage=seq[-1], key=key,
                                                   dir=relative(out, storage), stage_dirs=stage_dirs[u],
                                                   selection=selection))
                for packs in lines:
                    chain = []
                    for pack in packs:
                        models = tuple(_sharing(job, [other[i] for other in pack["shared"]])
                                       for i, job in enumerate(pack["jobs"]))
                        pack_key = stable_hash([j.key for j in pack["jobs"]], 24)
                        chain.append(PackJob(
                            dataset=name, prepared_dir=str(data.path), classes=tuple(data.classes),
                            stage=pack["settings"], models=models, model_cfg=dict(cfg["model"]),
                            image_size=int(cfg["image_size"]), device=device, precision=precision,
                            state_dir=join(storage, "packs", pack_key), execution=execution))
                    # finished packs are dropped from the chain's front: only the work left is scheduled
                    while chain and all(job_done(j) for j in chain[0].models):
                        stale_states.append(chain.pop(0).state_dir)
                    if chain:
                        chains.append(chain)
        records.extend(r for sel in selections for r in chosen[sel])
    # longest chains first: the three-stage transfer chains are the critical path of a run
    chains.sort(key=len, reverse=True)
    n_packs = sum(len(chain) for chain in chains)
    numbered = iter(range(1, n_packs + 1))
    chains = [[dataclasses.replace(job, label=f"pack {next(numbered)}/{n_packs}") for job in chain]
              for chain in chains]
    cross = _cross_evals(cfg, prepared, records, storage, device, precision, pack_size)
    for job in cross:
        infos[job.train_dataset].eval_on = sorted(set(infos[job.train_dataset].eval_on) | {job.eval_dataset})
    run_plan = RunPlan(run_id=run_id, storage=storage, settings={}, datasets=infos, models=records)
    return Plan(run_plan=run_plan, chains=chains, n_model_stages=n_total, n_done=n_done, cross_evals=cross,
                finished_state_dirs=stale_states)


def trajectory_key(key_inputs: dict) -> str:
    """What a stage's training computes, apart from which epoch it keeps: without a patience the
    selection only chooses among the epochs of one and the same training (evaluation passes
    change nothing), so two selections with equal trajectory keys can share it. With a patience
    the selection's rows decide when the training stops: then it is part of the trajectory.
    Recomputing the kept network's BN statistics comes after the training, whatever it is."""
    stage = dict(key_inputs["stage"], recalibrate_bn=None)
    if stage.get("patience") is None:
        stage["selection"] = None
    return stable_hash({**key_inputs, "stage": stage}, 32)


def _sharing(job: ModelJob, others: list[ModelJob]) -> ModelJob:
    """The main selection's job, also keeping the other selections' models of the same training."""
    if not others:
        return job
    shared = tuple(SharedOutput(o.meta["selection"], o.key, o.out_dir, o.meta) for o in others)
    return dataclasses.replace(job, shared=shared)


def _with_targets(split: FoldSplit, data: PreparedData) -> FoldSplit:
    """The landmark stage's rows: those with real landmarks (an image whose annotation failed is
    still classified, trained on and tested, but is no landmark target)."""
    def keep(rows):
        return rows[data.landmarks_ok[rows]]
    return FoldSplit(split.fold, keep(split.train), keep(split.val), keep(split.test))


def _cross_evals(cfg: dict, prepared: dict[str, PreparedData], records: list[ModelRecord], storage: str,
                 device: str, precision: str, chunk: int) -> list[CrossEvalJob]:
    """Jobs testing each data set's final models on the data sets its config names in `eval_on`,
    when those are part of this run; the output paths are added to the models' records."""
    jobs = []
    for train_name in prepared:
        for eval_name in cfg["datasets"][train_name].get("eval_on") or []:
            if eval_name not in prepared or eval_name == train_name:
                continue
            eval_hash = basename(prepared[eval_name].path)
            mine = [r for r in records if r.dataset == train_name]
            for start in range(0, len(mine), chunk):
                group = mine[start:start + chunk]
                outs = []
                for r in group:
                    rel = str(Path("cross") / train_name / f"{r.network}-{r.member}" / f"fold{r.fold}" /
                              f"{eval_hash}-{r.key[:12]}.parquet")
                    r.extra_predictions.append(rel)
                    outs.append(join(storage, rel))
                jobs.append(CrossEvalJob(
                    train_dataset=train_name, eval_dataset=eval_name, eval_prepared=str(prepared[eval_name].path),
                    classes=tuple(prepared[train_name].classes),
                    model_dirs=tuple(join(storage, r.dir) for r in group), out_paths=tuple(outs),
                    model_cfg=dict(cfg["model"]), image_size=int(cfg["image_size"]), device=device,
                    precision=precision))
    return jobs
