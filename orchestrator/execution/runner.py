"""One run, end to end: data sets -> prepared Parquet -> plan -> packs executed -> plan.json.

The caller (the CLI or run_all.py) builds the report from the run directory afterwards, so this
module never imports `results`.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from partfer.data_prep.errors import DatasetRootError
from partfer.orchestrator.config import (ConfigError, dump, epochs_for, identity_config, packs_per_gpu,
                                         resolve_device)
from partfer.orchestrator.execution.executor import executor_class, make_executor
from partfer.orchestrator.execution.progress import Progress
from partfer.orchestrator.messages import shown
from partfer.orchestrator.run_files import CONFIG_FILE, PLAN_FILE, RUNS_DIR, complexity_path
from partfer.orchestrator.storage.root import Store, open_store
from partfer.orchestrator.storage.store import (absolute, atomic_write_text, basename, check_readable, exists, join,
                                                open_prepared, remove_dir, stable_hash)


@dataclass
class RunRequest:
    """What to run: the resolved config (its `storage`, `executor` and `device` included) and
    the data sets to train on."""
    config: dict
    datasets: dict[str, str] = field(default_factory=dict)     # name -> raw root
    prepared: dict[str, str] = field(default_factory=dict)     # name -> prepared directory
    dry_run: bool = False        # print the plan (work, image-steps, projected time) and train nothing


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def parse_assignments(text: str | None, flag: str) -> dict[str, str]:
    """`jaffe=/data/jaffe,ckplus=/data/ck` -> {"jaffe": "/data/jaffe", "ckplus": "/data/ck"}."""
    out: dict[str, str] = {}
    for item in filter(None, (text or "").split(",")):
        if "=" not in item:
            raise ConfigError(f"{flag} expects NAME=PATH[,NAME=PATH], got {shown(item)}")
        name, path = item.split("=", 1)
        out[name.strip()] = path.strip()
    return out


def check_inputs(cfg: dict, datasets: dict[str, str], prepared: dict[str, str]) -> None:
    """Fail before any work when a data set is unknown or its root is missing or empty."""
    for name in list(datasets) + list(prepared):
        if name not in cfg["datasets"]:
            raise ConfigError(f"data set {shown(name)} is not described in the config "
                              f"(known: {', '.join(sorted(cfg['datasets']))})")
    for name, root in datasets.items():
        path = Path(root)
        if not path.is_dir():
            raise DatasetRootError(f"{name}: data set root {root} does not exist or is not a folder")
        if not any(path.iterdir()):
            raise DatasetRootError(f"{name}: data set root {root} is empty")
    for name, directory in prepared.items():
        check_readable(directory)
        if not exists(join(directory, "_SUCCESS")):
            raise DatasetRootError(f"{name}: {directory} is not a finished prepared data set "
                                   f"(no _SUCCESS marker)")


def ensure_ray(storage: str, shared: bool = False):
    """Join the cluster to use (RAY_ADDRESS, a `ray start` cluster on this machine, else a private
    local Ray) and refuse a store that some of its nodes could not see."""
    from partfer.orchestrator.execution.cluster import check_storage, connect
    info = connect(os.environ.get("RAY_ADDRESS"))
    check_storage(storage, info.nodes, shared=shared, may_grow=info.autoscaling)
    return info


SYNTHETIC_MTIME = 946684800           # 2000-01-01T00:00:00Z


def synthesize_defaults(cfg: dict, storage: str, log) -> dict[str, str]:
    """Generate the config's synthetic data sets (reused when already there)."""
    from partfer.data_prep.synth import synthesize
    roots = {}
    for name, spec in (cfg.get("synthetic") or {}).items():
        layout = cfg["datasets"][name]["layout"]
        root = Path(storage) / "synthetic" / f"{name}-{stable_hash([layout, spec], 10)}"
        marker = root.with_name(root.name + ".done")      # beside the data set, not inside it
        if not marker.is_file():
            log(f"generating synthetic {name} ({layout} layout) in {root}")
            if root.exists():
                shutil.rmtree(root)                          # an unfinished earlier attempt
            synthesize(layout, str(root), **spec)
            for path in root.rglob("*"):
                # the files' times enter the prepared data's hash: fixed times make a regenerated
                # set (another node's cache of a URI store) hash, and so reuse, the same
                os.utime(path, (SYNTHETIC_MTIME, SYNTHETIC_MTIME), follow_symlinks=False)
            marker.write_text("ok\n")
        roots[name] = str(root)
    if not roots:
        raise ConfigError("no data sets given (--datasets / --prepared) and the config has no `synthetic` section")
    return roots


def prep_config(cfg: dict, name: str, synthetic: bool) -> dict:
    """The preprocessing settings of one data set: the global `prep`, then the data set's own
    `datasets.<name>.prep`, then (for generated faces, which are drawn crops that ship their
    landmarks) `synthetic_prep`."""
    merged = dict(cfg["prep"])
    merged.update(cfg["datasets"][name].get("prep") or {})
    if synthetic:
        merged.update(cfg.get("synthetic_prep") or {"detector": "none", "annotator": "dataset"})
    return merged


def _prep_settings(p: dict):
    from partfer.data_prep.pipeline import PrepSettings
    return PrepSettings(detector=p["detector"], annotator=p["annotator"], crop_size=int(p["crop_size"]),
                        clahe_clip=float(p["clahe_clip"]), clahe_tile=int(p["clahe_tile"]),
                        ssd_confidence=float(p["ssd_confidence"]), box_margin=float(p["box_margin"]),
                        no_face=str(p["no_face"]))


def prepare(cfg: dict, datasets: dict[str, str], store: Store, log, synthetic: tuple[str, ...] = ()) -> dict[str, str]:
    """Raw roots -> prepared directories under the store's `work`, all data sets in one Ray Data
    job. A data set already prepared in the store is fetched instead of prepared again; synthetic
    faces generated into this node's own `work` (a cache of a URI store: no other node has them)
    are prepared on this machine's CPUs only."""
    from partfer.data_prep.pipeline import PrepRequest, prepare_datasets
    requests = [PrepRequest(name=name, layout=cfg["datasets"][name]["layout"], root=root,
                            settings=_prep_settings(prep_config(cfg, name, name in synthetic)),
                            options=dict(cfg["datasets"][name].get("options") or {}))
                for name, root in datasets.items()]
    infos = prepare_datasets(requests, str(store.work), this_node=bool(synthetic) and store.work_is_this_nodes,
                             fetch=store.prepared_fetcher())
    for name, info in infos.items():
        log(f"prepared {name}: {info.n_ok} images, {info.n_rejected} rejected"
            f"{' (reused)' if info.reused else ''} -> {info.path}")
    return {name: info.path for name, info in infos.items()}


def shrunk_against_paper(cfg: dict, datasets: list[str]) -> list[str]:
    """Every way this run's training budget, batches, rates or targets differ from configs/paper.yaml's (empty: the paper's)."""
    from partfer.orchestrator.config import load_config
    paper = load_config("paper")
    reasons = []
    if int(cfg["image_size"]) != int(paper["image_size"]):
        reasons.append(f"image size {cfg['image_size']} instead of {paper['image_size']}")
    for name in datasets:
        if name not in paper["datasets"]:
            continue
        cut = [f"{stage} {epochs_for(cfg, name, stage)}/{paper['datasets'][name]['epochs'][stage]}"
               for stage in ("baseline", "landmark", "head", "finetune")
               if epochs_for(cfg, name, stage) < int(paper["datasets"][name]["epochs"][stage])]
        if cut:
            reasons.append(f"{name} epochs below the paper's (ours/paper): {', '.join(cut)}")
    if int(cfg["members"]) < int(paper["members"]):
        reasons.append(f"ensembles of {cfg['members']} member(s) instead of {paper['members']}")
    rates = [f"{stage} {float(cfg['train']['lr'][stage]):g} (paper {float(rate):g})"
             for stage, rate in paper["train"]["lr"].items() if float(cfg["train"]["lr"][stage]) != float(rate)]
    if rates:
        reasons.append(f"learning rates: {', '.join(rates)}")
    if int(cfg["train"]["batch_size"]) != int(paper["train"]["batch_size"]):
        reasons.append(f"batches of {cfg['train']['batch_size']} instead of {paper['train']['batch_size']}")
    if cfg["train"]["landmark_targets"] != paper["train"]["landmark_targets"]:
        reasons.append(f"landmark targets {cfg['train']['landmark_targets']} "
                       f"(paper {paper['train']['landmark_targets']})")
    ours, theirs = cfg["train"]["steps_per_epoch"], paper["train"]["steps_per_epoch"]
    if ours != theirs and (ours is None or theirs is None or int(ours) < int(theirs)):
        what = "one pass over the training rows" if ours is None else str(ours)
        reasons.append(f"steps per epoch: {what} instead of {theirs}")
    return reasons


def write_complexity(cfg: dict, run_dir: Path, class_counts: tuple[int, ...] = ()) -> None:
    """Parameters, GFLOPs (paper's formulas 7-9) and storage of this run's architecture."""
    import json

    from partfer.models.describe import describe
    arch = {k: cfg["model"][k] for k in ("widths", "pool_kernel", "pool_stride", "pool_padding",
                                         "bn_eps", "bn_momentum", "head_hidden", "head_activation")}
    arch["widths"] = tuple(arch["widths"])
    counts = tuple(sorted({7, 8, *class_counts}))
    # counted at the run's input size: FLOPs grow with the image (parameters do not)
    info = describe(n_classes_list=counts, image_size=int(cfg["image_size"]),
                    n_members=int(cfg["members"]), **arch)
    atomic_write_text(complexity_path(run_dir), json.dumps(info, indent=2, default=str))


GIT_TIMEOUT_S = 5              # a hung git (network file system) must not hold up a run
PACKAGE_DIR = Path(__file__).resolve().parents[2]     # the repository root is the package


def git_state(folder: Path = PACKAGE_DIR) -> dict:
    """{"git_commit": HEAD, "git_dirty": tracked files changed} of the checkout `folder` is the
    root of; both None when it is not one (an installed wheel), or git is absent or too slow."""
    unknown = {"git_commit": None, "git_dirty": None}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                                  text=True, timeout=GIT_TIMEOUT_S, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    # inside some other repository (a venv kept in git): that commit says nothing about us
    if top is None or Path(top.strip()).resolve() != Path(folder).resolve():
        return unknown
    commit, status = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    if commit is None:
        return unknown
    return {"git_commit": commit.strip(), "git_dirty": None if status is None else bool(status.strip())}


def package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("partfer")
    except PackageNotFoundError:
        return None


def gpus_used(device: str, uses_ray: bool, info) -> int:
    """GPUs the run trained on (for GPU-hours): none on CPU, the Ray cluster's, else the one."""
    if not device.startswith("cuda"):
        return 0
    return int(info.gpus) if uses_ray and info is not None else 1


def versions() -> dict:
    import numpy
    import torch
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
           "partfer": package_version(), **git_state()}
    try:
        import ray
        out["ray"] = ray.__version__
    except ImportError:
        out["ray"] = None
    return out


def run(req: RunRequest, log=None) -> str | None:
    """Execute a run; returns its directory (`<storage>/runs/<run_id>`; for a store at a URI, this
    node's copy of it, already published to `<URI>/runs/<run_id>`). A dry run prepares the data
    (reused when done), prints the plan and returns None."""
    cfg = req.config
    storage = cfg["storage"]
    executor = cfg["executor"]
    uses_ray = executor_class(executor).uses_ray
    device = resolve_device(cfg["device"])
    store = open_store(storage)
    store.check()                    # unusable (scheme, credentials, network): stop now, in one line
    storage = store.root
    work = store.work                # files made here first: the store, or this node's cache of a URI
    progress_log = Progress(0, 0, 0)
    log = log or progress_log.note
    check_inputs(cfg, req.datasets, req.prepared)
    t_start = time.time()

    info = None
    if req.datasets or not req.prepared or uses_ray:
        info = ensure_ray(storage, bool(cfg["storage_shared"]))
        log(f"Ray at {info.address}: {info.nodes} node(s), {info.cpus:g} CPUs, {info.gpus:g} GPUs")
    raw, synthetic = dict(req.datasets), []
    if not raw and not req.prepared:
        raw = synthesize_defaults(cfg, str(work), log)
        synthetic = sorted(raw)
    # a relative local path would later be read against the store's root (plan.json, results/)
    prepared_dirs = {name: absolute(path) for name, path in req.prepared.items()}
    if raw:
        prepared_dirs.update(prepare(cfg, raw, store, log, tuple(synthetic)))
    prepared_dirs = {name: store.share_prepared(path) for name, path in prepared_dirs.items()}

    from partfer.orchestrator.execution.plan import build_plan, precision_for
    prepared = {name: open_prepared(path) for name, path in prepared_dirs.items()}
    pack_size = int(cfg["train"]["pack_size"] if device.startswith("cuda") else cfg["train"]["pack_size_cpu"])
    identity = {"config": identity_config(cfg),
                "prepared": {k: basename(v) for k, v in sorted(prepared_dirs.items())},
                "precision": precision_for(cfg, device)}
    run_id = f"{cfg['name']}-{stable_hash(identity, 10)}"
    plan = build_plan(cfg, prepared, storage, device, run_id, pack_size)
    if req.dry_run:
        from partfer.orchestrator.execution.plan_summary import measured_rate, summary_lines
        rate = measured_rate(str(work), device, int(cfg["image_size"]))
        for line in summary_lines(plan.chains, plan.n_model_stages, plan.n_done, cfg["train"]["selection"], rate):
            print(line, flush=True)
        if info is not None:
            from partfer.orchestrator.execution.pack_planner import ProjectionRates
            from partfer.orchestrator.execution.plan_summary import layout_lines
            for line in layout_lines(plan.chains, device, info.gpus, info.cpus, rate, ProjectionRates.from_config(cfg)):
                print(line, flush=True)
        return None
    for state_dir in plan.finished_state_dirs:      # a run killed between publishing and cleaning up
        remove_dir(state_dir)
    run_dir = work / RUNS_DIR / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    shrunk_reasons = shrunk_against_paper(cfg, list(prepared))
    if synthetic:
        shrunk_reasons.append(f"synthetic data ({', '.join(sorted(set(synthetic)))})")
    plan.run_plan.settings = {
        "config_name": cfg["name"], "image_size": int(cfg["image_size"]),
        "epochs_scale": float(cfg["epochs_scale"]), "seed": int(cfg["seed"]), "device": device,
        "executor": executor, "precision": precision_for(cfg, device), "pack_size": pack_size,
        "networks": list(cfg["networks"]), "parts": list(cfg["parts"]), "members": int(cfg["members"]),
        "selection": cfg["train"]["selection"], "twin_selection": cfg["train"]["twin_selection"],
        "steps_per_epoch": cfg["train"]["steps_per_epoch"], "patience": cfg["train"]["patience"],
        "transfer_bn": cfg["train"]["transfer_bn"], "landmark_targets": cfg["train"]["landmark_targets"],
        "epochs": {name: {s: epochs_for(cfg, name, s) for s in ("baseline", "landmark", "head", "finetune")}
                   for name in prepared},
        "prep": {n: prep_config(cfg, n, n in synthetic) for n in prepared},
        "detector": ", ".join(sorted({prep_config(cfg, n, n in synthetic)["detector"] for n in prepared})),
        "annotator": ", ".join(sorted({prep_config(cfg, n, n in synthetic)["annotator"] for n in prepared})),
        "synthetic": sorted(set(synthetic)),
        "shrunk": bool(shrunk_reasons), "shrunk_reasons": shrunk_reasons,
        # "finished" only once everything is written: a run killed or crashed on the way stays
        # "incomplete" (never "running", which a report could not know to be true)
        "versions": versions(), "gpus": gpus_used(device, uses_ray, info),
        "started": t_start, "status": "incomplete",
    }
    atomic_write_text(run_dir / CONFIG_FILE, dump(cfg))
    write_complexity(cfg, run_dir, tuple(len(d.classes) for d in prepared.values()))
    atomic_write_text(run_dir / PLAN_FILE, plan.run_plan.to_json())
    run_uri = store.publish_run(run_dir)            # a crashed run is visible at the URI too

    progress = Progress(plan.n_model_stages, plan.n_done, sum(len(c) for c in plan.chains), start=t_start, run_dir=run_dir)
    progress.note(f"run {run_id}: {len(plan.run_plan.models)} models, {plan.n_model_stages} model-stages "
                  f"in {sum(len(c) for c in plan.chains)} packs on {device} ({executor} executor)")
    t_train = time.time()
    sharing = packs_per_gpu(cfg) if device.startswith("cuda") else 1     # packs at once on a GPU
    chosen = make_executor(executor, cfg, storage, device, info)
    results = chosen.run_chains(plan.chains, progress)
    chosen.run_cross_evals(plan.cross_evals, progress)
    from partfer.orchestrator.training.epoch_metrics import write_fold_means
    write_fold_means(run_dir)
    if run_uri:
        copied = store.pull_outputs(plan.run_plan)      # what the analysis and the report read
        progress.note(f"{copied} output files copied from {storage} to {work}")
    from partfer.orchestrator.evaluation.analysis import gradcam_dataset
    for name in prepared:
        # on the driver, which may have no GPU: a few faces, cheap on a CPU
        path = gradcam_dataset(plan.run_plan, name, run_dir, cfg["model"], int(cfg["image_size"]), "cpu")
        if path:
            progress.note(f"Grad-CAM maps of {name} test faces -> {path}")
    t_end = time.time()
    plan.run_plan.settings.update({
        "status": "finished", "finished": t_end, "wall_seconds": round(t_end - t_start, 1),
        "train_seconds": round(t_end - t_train, 1),
        "trained_model_stages": sum(r.trained for r in results),
        "train_images": sum(r.images for r in results),
        # time inside packs (setup included), summed, and the wall time during which at least
        # one pack ran (packs may overlap): the rest of the training phase is scheduling, i.e.
        # devices idle between packs, plus the cross-data-set tests and Grad-CAM
        "pack_seconds": round(sum(r.seconds for r in results), 1),
        "pack_busy_seconds": round(busy_seconds([(r.started, r.started + r.seconds) for r in results]), 1),
        "pack_setup_seconds": round(sum(r.setup_seconds for r in results), 1),
        "packs_per_gpu": sharing,
        "step_plans": sum(r.step_plans for r in results),
    })
    fallbacks = {name: reason for r in results for name, reason in r.kernel_fallbacks.items()}
    if fallbacks:      # custom kernels that failed their check: PyTorch's route trained those packs
        plan.run_plan.settings["kernel_fallbacks"] = fallbacks
    atomic_write_text(run_dir / PLAN_FILE, plan.run_plan.to_json())
    store.publish_run(run_dir)
    progress.note(f"training done in {t_end - t_train:.0f} s; run directory {run_dir}"
                  + (f" (published to {run_uri})" if run_uri else ""))
    return str(run_dir)
