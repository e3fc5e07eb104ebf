"""`partfer tune`: a Ray Tune sweep of one stage's learning rate for one network.

A trial is one point (a learning rate, optionally a batch size) applied to every model of the
network (all members or parts x all folds), trained as ONE pack by `run_pack`, reporting the
models' mean validation loss and accuracy after every epoch, so ASHA can stop bad rates early.
Earlier stages do not depend on a later stage's rate (plan keys), so they are trained once,
before the sweep, and every trial starts from the same checkpoints. Each finished trial's models
land in the store under their own keys: `partfer run --config <sweep>/best.yaml` reuses the best.
"""
from __future__ import annotations

import copy
import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from partfer.orchestrator.config import (STAGES, ConfigError, epochs_for, find_config, load_config,
                                 resolve_device)
from partfer.orchestrator.networks import NETWORKS
from partfer.orchestrator.tune.search_space import Space, numeric_space, parse_space, sample_points
from partfer.orchestrator.storage.root import Store, open_store
from partfer.orchestrator.storage.store import absolute, basename, is_done, join, local_file, stable_hash

WHOLE_PACK = 1_000_000          # pack size that holds every model of a network in one pack


class SweepError(ConfigError):
    """A sweep request that cannot run (unknown network or stage, a stage the network lacks)."""


@dataclass
class SweepRequest:
    config: str                                   # config name or path (best.yaml includes it)
    dataset: str
    network: str
    stage: str
    lr: str = "loguniform:1e-5:1e-2"
    batch_size: str | None = None                 # e.g. "choice:16,32" -> train.batch_size
    samples: int = 8
    scheduler: str = "asha"                       # asha | fifo
    overrides: dict = field(default_factory=dict)   # dotted config keys (--set, --out, --device)
    datasets: dict[str, str] = field(default_factory=dict)    # name -> raw root
    prepared: dict[str, str] = field(default_factory=dict)    # name -> prepared directory
    max_concurrent: int | None = None
    gpus_per_trial: float | None = None
    grace_period: int | None = None


@dataclass(frozen=True)
class SweepSetup:
    """What a trial needs to build its pack (small and picklable: it travels to every trial)."""
    config: dict
    dataset: str
    prepared_dir: str             # a directory, or a URI under a store at one
    storage: str                  # storage root: a path or a URI
    device: str
    network: str
    stage: str


@dataclass
class SweepResult:
    sweep_dir: str
    rows: list[dict]
    best: dict | None
    pretrained: int                  # model-stages of earlier stages trained before the trials
    files: dict[str, str]


def stages_of(network: str) -> tuple[str, ...]:
    return NETWORKS[network].stages


def check_request(req: SweepRequest, cfg: dict) -> None:
    if req.network not in NETWORKS:
        raise SweepError(f"unknown network {req.network!r}; choose from {', '.join(NETWORKS)}")
    if req.stage not in STAGES:
        raise SweepError(f"unknown stage {req.stage!r}; choose from {', '.join(STAGES)}")
    if req.stage not in stages_of(req.network):
        raise SweepError(f"network {req.network} has no {req.stage} stage "
                         f"(its stages: {', '.join(stages_of(req.network))})")
    if req.dataset not in cfg["datasets"]:
        raise SweepError(f"data set {req.dataset!r} is not described in the config "
                         f"(known: {', '.join(sorted(cfg['datasets']))})")
    if req.scheduler not in ("asha", "fifo"):
        raise SweepError(f"scheduler must be asha or fifo, not {req.scheduler!r}")
    # every option checked here, before data is prepared or Ray starts (Ray Tune asserts its own
    # later, as a traceback after the earlier stages have trained)
    for option, value in (("--max-concurrent", req.max_concurrent), ("--grace-period", req.grace_period),
                          ("--samples", req.samples)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise SweepError(f"{option} must be a whole number >= 1, not {value}")
    gpus = req.gpus_per_trial
    if gpus is not None and not (isinstance(gpus, (int, float)) and 0 < gpus <= 1):
        raise SweepError(f"--gpus-per-trial must be in (0, 1] (a trial trains one pack on one GPU), not {gpus}")


def parse_spaces(req: SweepRequest) -> dict[str, Space]:
    spaces = {"lr": numeric_space(parse_space(req.lr, "--lr"), "--lr")}
    if req.batch_size:
        spaces["batch_size"] = numeric_space(parse_space(req.batch_size, "--batch-size"), "--batch-size",
                                             integer=True)
    return spaces


def point_config(setup: SweepSetup, point: dict) -> dict:
    """The run config of one point: the chosen network only, the point's rate for the stage.

    A sweep's metric is the monitored rows' loss: under the authors' selection (evaluated_fold)
    that is the test fold's, and a rate chosen on it would be chosen on the test images; the
    sweep selects on held-out training subjects instead. No no-peeking twin is trained."""
    cfg = copy.deepcopy(setup.config)
    cfg["networks"] = [setup.network]
    cfg["train"]["twin_selection"] = None
    if cfg["train"]["selection"] == "evaluated_fold":
        cfg["train"]["selection"] = "heldout_subjects"
    cfg["train"]["lr"][setup.stage] = float(point["lr"])
    if "batch_size" in point:
        cfg["train"]["batch_size"] = int(point["batch_size"])
    return cfg


def point_plan(setup: SweepSetup, point: dict):
    """(plan, the stage's PackJob or None when all its models are finished, their output dirs)."""
    from partfer.orchestrator.execution.plan import build_plan
    from partfer.orchestrator.storage.store import open_prepared
    plan = build_plan(point_config(setup, point), {setup.dataset: open_prepared(setup.prepared_dir)},
                      setup.storage, setup.device, "tune", WHOLE_PACK)
    out_dirs = [join(setup.storage, r.stage_dirs[setup.stage]) for r in plan.run_plan.models
                if r.network == setup.network]
    job = next((j for chain in plan.chains for j in chain if j.stage.stage == setup.stage), None)
    return plan, job, out_dirs


def pretrain_earlier_stages(setup: SweepSetup, points: list[dict], log, cluster=None) -> int:
    """Train the stages before the swept one, once per distinct batch size, before any trial, on
    the config's executor (the one it hands a handful of packs to).

    Their keys do not depend on the swept rate, so every trial then finds them finished.
    """
    from partfer.orchestrator.execution.executor import make_executor
    from partfer.orchestrator.execution.progress import Progress
    earlier = stages_of(setup.network)[:stages_of(setup.network).index(setup.stage)]
    if not earlier:
        return 0
    chains, seen = [], set()
    for point in points:
        plan, _, _ = point_plan(setup, point)
        for chain in plan.chains:
            prefix = [j for j in chain if j.stage.stage in earlier]
            ident = tuple(m.key for j in prefix for m in j.models)
            if prefix and ident not in seen:
                seen.add(ident)
                chains.append(prefix)
    if not chains:
        log(f"earlier stages ({', '.join(earlier)}) already finished in the store: reused")
        return 0
    n = sum(len(j.models) for c in chains for j in c)
    log(f"training the earlier stages ({', '.join(earlier)}) once before the sweep: {n} model-stages")
    executor = make_executor(setup.config["executor"], setup.config, setup.storage, setup.device, cluster,
                             few_packs=True)
    results = executor.run_chains(chains, Progress(n, 0, sum(len(c) for c in chains)))
    return sum(r.trained for r in results)


def read_history(out_dir: str) -> list[dict]:
    with open(local_file(join(out_dir, "history.csv")), newline="") as fh:
        return list(csv.DictReader(fh))


def _at(history: list[dict], epoch: int, column: str) -> float:
    """A finished model's value at `epoch`; after it stopped, its last value (it no longer changes)."""
    rows = [r for r in history if int(r["epoch"]) <= epoch] or history[:1]
    value = rows[-1][column] if rows else ""
    return float(value) if value not in ("", None) else math.nan


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def trial(config: dict, setup: SweepSetup) -> None:
    """Tune function trainable: train the point's pack, report the models' means every epoch.

    Models already finished (an earlier sweep, a run) are not retrained; their history.csv
    stands in for them, so a repeated point reports the same curve without training.
    """
    from ray import tune

    from partfer.orchestrator.training.train import run_pack
    point = config["point"]
    _, job, out_dirs = point_plan(setup, point)
    done = {d: read_history(d) for d in out_dirs if is_done(d)}
    reported = []

    def report(epoch: int, val_loss: list[float], val_acc: list[float], train_loss: float, active: int):
        reported.append(epoch)
        tune.report({"epoch": epoch, "lr": float(point["lr"]), "batch_size": point.get("batch_size"),
                     "val_loss": _mean(val_loss), "val_acc": _mean(val_acc), "train_loss": train_loss,
                     "models_training": active, "models": len(out_dirs)})

    last_epoch: list[tuple] = []

    def on_epoch(epoch: int, m: dict) -> None:
        old_loss = [_at(h, epoch, "val_loss") for h in done.values()]
        old_acc = [_at(h, epoch, "val_acc") for h in done.values()]
        acc = m["val_acc"] if m["val_acc"] is not None else [math.nan] * len(m["val_loss"])
        args = (epoch, m["val_loss"] + old_loss, acc + old_acc, _mean(m["train_loss"]), sum(m["active"]))
        if epoch == job.stage.max_epochs:
            # ASHA stops a trial as soon as it reports epoch max_t: report the last epoch only
            # once run_pack has written the models, or they would never reach the store
            last_epoch.append(args)
        else:
            report(*args)

    if job is not None:
        run_pack(job, log=lambda text: print(text, flush=True), on_epoch=on_epoch)
        for args in last_epoch:
            report(*args)
    if not reported:                     # every model was already finished: replay their curves
        histories = [read_history(d) for d in out_dirs]
        last = max(int(r["epoch"]) for h in histories for r in h)
        for epoch in range(1, last + 1):
            if any(int(r["epoch"]) == epoch for h in histories for r in h):
                report(epoch, [_at(h, epoch, "val_loss") for h in histories],
                       [_at(h, epoch, "val_acc") for h in histories],
                       _mean([_at(h, epoch, "train_loss") for h in histories]),
                       sum(int(r["epoch"]) == epoch for h in histories for r in h))


def _prepare_data(req: SweepRequest, cfg: dict, store: Store, log) -> str:
    """The chosen data set's prepared directory (a URI in a store at one), made exactly as
    `partfer run` makes it."""
    from partfer.orchestrator.execution.runner import check_inputs, ensure_ray, prepare, synthesize_defaults
    check_inputs(cfg, req.datasets, req.prepared)
    if req.dataset in req.prepared:
        return store.share_prepared(absolute(req.prepared[req.dataset], resolve=True))
    work = str(store.work)
    raw, synthetic = dict(req.datasets), ()
    if not raw and not req.prepared:
        raw = synthesize_defaults(cfg, work, log)
        synthetic = tuple(sorted(raw))
    if req.dataset not in raw:
        given = sorted(set(req.datasets) | set(req.prepared) | set(raw))
        raise SweepError(f"data set {req.dataset!r} is not among those given ({', '.join(given) or 'none'})")
    ensure_ray(store.root, bool(cfg["storage_shared"]))
    dirs = prepare(cfg, {req.dataset: raw[req.dataset]}, store, log, synthetic)
    return store.share_prepared(str(Path(dirs[req.dataset]).resolve()))


def _resources(cluster: dict, device: str, gpus_per_trial: float, max_concurrent: int | None):
    """Trial resources: one CPU (plus a GPU share on CUDA); concurrency fits what the cluster has."""
    if device.startswith("cuda"):
        res = {"cpu": 1, "gpu": gpus_per_trial}
        fit = int(cluster.get("GPU", 0) // gpus_per_trial) if gpus_per_trial > 0 else int(cluster.get("CPU", 1))
    else:
        res, fit = {"cpu": 1}, int(cluster.get("CPU", 1))
    return res, max_concurrent or max(1, fit)


def run_sweep(req: SweepRequest, log=print) -> SweepResult:
    """Prepare the data, train earlier stages once, run the trials, write the sweep's summary."""
    import ray
    from ray import tune

    from partfer.orchestrator.tune.sweep_report import collect_rows, pick_best, write_outputs
    from partfer.orchestrator.execution.executor import executor_class
    cfg = load_config(req.config, req.overrides)
    check_request(req, cfg)
    executor_class(cfg["executor"])          # an unknown executor fails before any work
    spaces = parse_spaces(req)
    store = open_store(cfg["storage"])
    store.check()
    storage = store.root
    device = resolve_device(cfg["device"])
    prepared_dir = _prepare_data(req, cfg, store, log)
    from partfer.orchestrator.execution.runner import ensure_ray
    cluster = ensure_ray(storage, bool(cfg["storage_shared"]))
    setup = SweepSetup(config=cfg, dataset=req.dataset, prepared_dir=prepared_dir, storage=storage,
                       device=device, network=req.network, stage=req.stage)
    points = sample_points(spaces, req.samples, int(cfg["seed"]))
    sweep_id = (f"{req.dataset}-{req.network}-{req.stage}-"
                f"{stable_hash([cfg, basename(prepared_dir), device, points, req.scheduler], 10)}")
    sweep_dir = store.work / "tune" / sweep_id               # the summary: published below for a URI
    log(f"sweep {sweep_id}: {len(points)} trials of {req.network} {req.stage} on {req.dataset} ({device})")
    pretrained = pretrain_earlier_stages(setup, points, log, cluster)

    max_t = epochs_for(cfg, req.dataset, req.stage)
    scheduler = None
    if req.scheduler == "asha":
        grace = min(max_t, req.grace_period or max(1, max_t // 4))
        scheduler = tune.schedulers.ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=grace)
    gpus = float(req.gpus_per_trial if req.gpus_per_trial is not None else cfg["train"]["gpus_per_pack"])
    resources, concurrent = _resources(ray.cluster_resources(), device, gpus, req.max_concurrent)
    trainable = tune.with_resources(tune.with_parameters(trial, setup=setup), resources)
    tuner = tune.Tuner(
        trainable,
        param_space={"point": tune.grid_search(points)},
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", scheduler=scheduler,
                                    num_samples=1, max_concurrent_trials=concurrent),
        run_config=tune.RunConfig(storage_path=join(storage, "tune"), name=sweep_id, verbose=1),
    )
    t0 = time.time()
    grid = tuner.fit()
    log(f"sweep finished in {time.time() - t0:.0f} s")
    rows = collect_rows(grid, lambda point: point_plan(setup, point)[2], max_t)
    best = pick_best(rows)
    files = write_outputs(sweep_dir, rows, best, req, find_config(req.config).resolve(), storage)
    published = store.publish(sweep_dir, "tune", sweep_id)
    if published:
        log(f"sweep summary published to {published}")
    return SweepResult(sweep_dir=str(sweep_dir), rows=rows, best=best, pretrained=pretrained, files=files)
