"""Packs trained by Ray Train (V2): the `train` executor.

One Trainer run trains one stage of a group of k pack chains, one pack per worker: the work of a
k-times bigger pack split by models, with no communication between workers during training.
A model's numbers depend only on the pack it is in (its generator draws every batch of that pack),
so a group trained by k workers writes bit-identical outputs to the same packs trained by one
worker each, or by the inline and ray executors.

Each worker runs `run_pack` with its state file in a private folder; whenever any worker's state
file is new, every worker puts its current one into a Ray Train checkpoint in the run's storage
(`<store>/train_runs/<name>`). A restarted worker group (FailureConfig) and a rerun of the same
plan (same storage path and name) copy them back before `run_pack` resumes from them.

`ray.train.report` is a collective: every worker reports once per round (an epoch of the stage),
so a worker whose pack ended early, or was already finished, reports empty rounds until the last.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from partfer.orchestrator.execution.executor import Executor
from partfer.orchestrator.execution.progress import Progress
from partfer.orchestrator.training.jobs import PackJob, PackResult

STATE_FILE = "state.pt"
ROUND_FILE = "round.json"
RESULTS_FILE = "results.json"
RUNS_DIR = "train_runs"


@dataclass(frozen=True)
class TrainSettings:
    workers: int                  # packs (workers) per Trainer run
    cpus_per_worker: float
    gpus_per_worker: float
    max_failures: int             # worker-group restarts before a run fails
    storage: str                  # the store (a path or a URI); Trainer runs keep their checkpoints under it


def settings_for(cfg: dict, chains: list[list[PackJob]], storage: str, device: str, cluster) -> TrainSettings:
    """The executor's settings from the config; workers_per_run 0 asks the planner, which sizes
    Trainer runs to the cluster's GPUs (on CPUs: its CPUs over cpus_per_pack) and this plan."""
    from partfer.orchestrator.execution.pack_planner import ProjectionRates, choose, curve_for, slots_for, workload
    tr = cfg["train"]
    workers = int(tr["workers_per_run"])
    if workers == 0:
        pack_size = max((len(job.models) for chain in chains for job in chain), default=1)
        slots = slots_for(device, cluster.gpus if cluster else 0, cluster.cpus if cluster else 1,
                          float(tr["gpus_per_worker"]), float(tr["cpus_per_pack"]))
        rates = ProjectionRates.from_config(cfg)
        workers = choose(workload(chains), slots, curve_for(device, rates), rates.trainer_start_seconds,
                         pack_sizes=(pack_size,)).workers if chains else 1
    return TrainSettings(workers=workers, cpus_per_worker=float(tr["cpus_per_pack"]),
                         gpus_per_worker=float(tr["gpus_per_worker"]), max_failures=int(tr["max_retries"]),
                         storage=storage)


def chain_signature(chain: list[PackJob]) -> tuple:
    """What chains must share to be trained side by side: data set and, stage by stage, the
    number of rounds (epochs), since every worker reports once per round."""
    return tuple((job.dataset, job.stage.stage, job.stage.max_epochs) for job in chain)


def group_chains(chains: list[list[PackJob]], workers: int) -> list[list[list[PackJob]]]:
    """Chains of one signature, `workers` at a time, in the plan's order (longest first)."""
    by_signature: dict[tuple, list[list[PackJob]]] = {}
    for chain in chains:
        by_signature.setdefault(chain_signature(chain), []).append(chain)
    groups = []
    for members in by_signature.values():
        groups.extend(members[i:i + workers] for i in range(0, len(members), max(1, workers)))
    groups.sort(key=lambda g: len(g[0]), reverse=True)
    return groups


def run_name(jobs: list[PackJob]) -> str:
    """The Trainer run's name: the same packs, the same name (and so the same checkpoints)."""
    from partfer.orchestrator.storage.store import stable_hash
    return f"{jobs[0].dataset}-{jobs[0].stage.stage}-{stable_hash([j.state_dir for j in jobs], 16)}"


# ---------------------------------------------------------------- worker side

def _file_id(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def restore(checkpoint, rank: int, state_dir: Path) -> int:
    """Copy this worker's pack state out of a Trainer checkpoint; the round it was taken in."""
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        saved = Path(folder) / f"pack{rank}" / STATE_FILE
        if saved.is_file():
            shutil.copyfile(saved, state_dir / STATE_FILE)
        marker = Path(folder) / ROUND_FILE
        return int(json.loads(marker.read_text())["round"]) if marker.is_file() else 0


class RoundReporter:
    """Reports each round of a pack through `ray.train.report`, with a checkpoint of every
    worker's state whenever one of them has a new state file."""

    def __init__(self, rank: int, state_dir: Path, rounds: int, restored_round: int):
        self.rank, self.state_dir, self.rounds = rank, state_dir, rounds
        self.restored_round = restored_round
        self.reported = restored_round          # rounds up to here were reported before a restart
        self.uploaded = _file_id(state_dir / STATE_FILE)

    def on_epoch(self, epoch: int, figures: dict) -> None:
        """run_pack's per-epoch callback."""
        if epoch > self.reported:
            self._report(epoch, _summary(figures))

    def finish(self, result: PackResult) -> dict:
        """Empty rounds up to the stage's last, then a final round carrying every worker's result
        (the driver reads rank 0's metrics)."""
        for epoch in range(self.reported + 1, self.rounds + 1):
            self._report(epoch, {"epoch": epoch, "finished": True})
        import ray.train
        from ray.train import Checkpoint
        mine = dict(dataclasses.asdict(result), restored_round=self.restored_round)
        everyone = _gather(mine)
        if self.rank != 0:
            ray.train.report({"epoch": self.rounds + 1})
            return mine
        # a run's result is its last checkpoint's: the results travel in one
        folder = Path(tempfile.mkdtemp(prefix="partfer-ckpt-"))
        try:
            (folder / RESULTS_FILE).write_text(json.dumps(everyone))
            (folder / ROUND_FILE).write_text(json.dumps({"round": self.rounds}))
            ray.train.report({"epoch": self.rounds + 1}, checkpoint=Checkpoint.from_directory(str(folder)))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return mine

    def _report(self, epoch: int, metrics: dict) -> None:
        import ray.train
        from ray.train import Checkpoint
        state = self.state_dir / STATE_FILE
        fresh = _file_id(state)
        if not _any_rank(fresh is not None and fresh != self.uploaded):
            ray.train.report(dict(metrics, epoch=epoch))
            self.reported = epoch
            return
        folder = Path(tempfile.mkdtemp(prefix="partfer-ckpt-"))
        try:
            if fresh is not None:
                (folder / f"pack{self.rank}").mkdir()
                os.link(state, folder / f"pack{self.rank}" / STATE_FILE)   # the saver replaces, never rewrites
            if self.rank == 0:
                (folder / ROUND_FILE).write_text(json.dumps({"round": epoch}))
            ray.train.report(dict(metrics, epoch=epoch), checkpoint=Checkpoint.from_directory(str(folder)))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.uploaded = fresh
        self.reported = epoch


def _summary(figures: dict) -> dict:
    """Per-model lists -> means over the models that have a figure (JSON-safe: no NaN)."""
    out = {"active": int(sum(figures.get("active") or []))}
    for name in ("train_loss", "val_loss", "val_acc"):
        values = [v for v in (figures.get(name) or []) if v is not None and not math.isnan(v)]
        out[name] = sum(values) / len(values) if values else None
    return out


def _any_rank(flag: bool) -> bool:
    import torch
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _gather(obj: dict) -> list[dict]:
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def train_worker(config: dict) -> None:
    """The Trainer's per-worker loop: worker r trains pack r of the group with run_pack."""
    import ray.train
    import torch

    from partfer.orchestrator.training.train import run_pack
    from partfer.orchestrator.training.epoch_metrics import epoch_reporter
    from partfer.orchestrator.execution.executors import PackMessages
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    job: PackJob = config["jobs"][rank]
    messages = PackMessages(config["sink"], config["indexes"][rank])
    send = messages.send
    send("start")
    # in the worker's own log too (Ray keeps one per worker process, on its node)
    print(f"partfer Train worker {rank}: {job.dataset} {job.stage.stage} pack of {len(job.models)} models",
          flush=True)
    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads:
        torch.set_num_threads(threads)
    if job.device.startswith("cuda"):
        import ray.train.torch
        job = dataclasses.replace(job, device=str(ray.train.torch.get_device()))
    state_dir = Path(tempfile.mkdtemp(prefix="partfer-pack-"))
    try:
        restored = restore(ray.train.get_checkpoint(), rank, state_dir)
        reporter = RoundReporter(rank, state_dir, job.stage.max_epochs, restored)
        to_driver = epoch_reporter(job, lambda epoch, figures: send("epoch", epoch, figures))

        def on_epoch(epoch: int, metrics: dict) -> None:
            to_driver(epoch, metrics)
            reporter.on_epoch(epoch, metrics)
        result = run_pack(dataclasses.replace(job, state_dir=str(state_dir)),
                          log=lambda text: send("log", text), on_epoch=on_epoch)
        messages.flush()
        reporter.finish(result)
    finally:
        messages.flush()
        shutil.rmtree(state_dir, ignore_errors=True)


# ---------------------------------------------------------------- driver side

def fit_packs(jobs: list[PackJob], settings: TrainSettings, sink, indexes: list[int]) -> list[dict]:
    """One Trainer run over these packs (one stage of a group); each pack's result as a dict.
    The packs' lines and epochs go to the driver through `sink` (a Ray queue), tagged `indexes`."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from partfer.orchestrator.storage.store import join, make_dirs, remove_dir
    gpu = jobs[0].device.startswith("cuda")
    resources = {"CPU": settings.cpus_per_worker}
    if gpu:
        resources["GPU"] = settings.gpus_per_worker
    storage = join(settings.storage, RUNS_DIR)
    make_dirs(storage)
    name = run_name(jobs)
    trainer = TorchTrainer(
        train_worker, train_loop_config={"jobs": list(jobs), "sink": sink, "indexes": list(indexes)},
        # the workers never exchange tensors, only a flag and the results: gloo everywhere, which
        # also leaves NCCL's one-process-per-GPU rule out of fractional GPU shares
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=len(jobs), use_gpu=gpu, resources_per_worker=resources),
        run_config=RunConfig(storage_path=storage, name=name,
                             failure_config=FailureConfig(max_failures=settings.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)))
    result = trainer.fit()
    with result.checkpoint.as_directory() as folder:
        results = json.loads((Path(folder) / RESULTS_FILE).read_text())
    remove_dir(join(storage, name))        # every pack published its outputs: the states are spent
    return results


def _uses_gpu(chains: list[list[PackJob]]) -> bool:
    return any(job.device.startswith("cuda") for chain in chains for job in chain)


def _fit_stage(jobs: list[PackJob], settings: TrainSettings, sink, indexes: list[int], *_upstream) -> list[dict]:
    """Ray task body launching one Trainer run; `_upstream` carries the previous stage's dependency."""
    return fit_packs(jobs, settings, sink, indexes)


def run_train(chains: list[list[PackJob]], progress: Progress, settings: TrainSettings) -> list[PackResult]:
    """Every group's stages as Trainer runs, stage s+1 after stage s; groups run concurrently as
    far as the cluster's resources go (Ray queues the workers of the rest)."""
    import ray
    from ray.util.queue import Queue

    from partfer.orchestrator.execution.executors import PackFailure, collect
    progress.plan(chains)
    launch = ray.remote(num_cpus=0, max_retries=0)(_fit_stage)
    sink = Queue(actor_options={"num_cpus": 0})
    every: list[PackJob] = []
    pending: dict = {}
    groups = group_chains(chains, settings.workers)
    progress.note(f"Ray Train: {sum(len(g[0]) for g in groups)} runs of up to {settings.workers} worker(s) "
                  f"({settings.cpus_per_worker:g} CPU{'' if settings.cpus_per_worker == 1 else 's'}"
                  + (f", {settings.gpus_per_worker:g} GPU" if _uses_gpu(chains) else "")
                  + f" each), checkpoints under {settings.storage}/{RUNS_DIR}")
    for group in groups:
        previous = None
        for stage in range(len(group[0])):
            jobs = [chain[stage] for chain in group]
            indexes = list(range(len(every), len(every) + len(jobs)))
            every.extend(jobs)
            ref = launch.options(name=f"train-{jobs[0].dataset}-{jobs[0].stage.stage}").remote(
                jobs, settings, sink, indexes, *([previous] if previous is not None else []))
            pending[ref] = jobs
            previous = ref
    results: list[PackResult] = []

    def finished(jobs: list[PackJob], done: list[dict]) -> None:
        resumed = max(fields["restored_round"] for fields in done)
        if resumed:
            progress.note(f"{jobs[0].dataset} {jobs[0].stage.stage} Train run resumed from its checkpoint "
                          f"of epoch {resumed}")
        for job, fields in zip(jobs, done):
            result = PackResult(**{k: v for k, v in fields.items() if k != "restored_round"})
            progress.finished(job, result)
            results.append(result)
    failures = collect(pending, sink, every, progress,
                       lambda jobs: f"{jobs[0].dataset} {jobs[0].stage.stage} Trainer run of {len(jobs)} pack(s)",
                       finished)
    ray.kill(sink.actor)
    if failures:
        raise PackFailure(failures)
    return results


class TrainExecutor(Executor):
    """Packs as Ray Train runs sized by settings_for; cross-data-set tests as Ray tasks. A handful
    of packs (a final model) goes to the ray executor: worker groups buy nothing there."""
    few_packs = "ray"

    def run_chains(self, chains: list[list[PackJob]], progress: Progress) -> list[PackResult]:
        return run_train(chains, progress, settings_for(self.cfg, chains, self.storage, self.device, self.cluster))

    def run_cross_evals(self, jobs: list, progress: Progress) -> int:
        from partfer.orchestrator.execution.executors import run_cross_evals_ray
        return run_cross_evals_ray(jobs, progress, gpus=min(1.0, float(self.cfg["train"]["gpus_per_worker"])))


__all__ = ["TrainExecutor", "TrainSettings", "chain_signature", "settings_for", "fit_packs", "group_chains",
           "run_name", "run_train", "train_worker"]
