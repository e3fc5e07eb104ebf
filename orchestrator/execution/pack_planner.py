"""How to lay a plan out on a cluster: pack size, packs (workers) per Trainer run, runs at once,
and the projected wall time of each choice.

The model: a chain's stages run one after another; a pack of m models trains at rate(m) images
a second on one GPU (a saturating curve through two measured packs); every Trainer run pays a
fixed start-up; G GPUs hold G // k runs of k workers at once, filled longest group first. The
work of a model stage is its image-steps (pack_work): epochs x steps x batch. The measured figures
(the two packs' rates, the start-up) are the hardware profile's `projection` (ProjectionRates).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from partfer.orchestrator.execution.pack_work import pack_work
from partfer.orchestrator.training.jobs import PackJob

PACK_SIZES = (50, 40, 25, 20, 10, 5)
WORKERS = (1, 2, 4, 8)


@dataclass(frozen=True)
class ChainKind:
    """Models that follow the same stages of one data set under one selection."""
    dataset: str
    selection: str
    per_model: tuple[int, ...]     # image-steps of one model, stage by stage
    units: int                     # how many such models


@dataclass(frozen=True)
class RateCurve:
    """rate(m) = top * m / (m + half): images a second of a pack of m models."""
    top: float
    half: float

    @classmethod
    def through(cls, a: tuple[int, float], b: tuple[int, float]) -> "RateCurve":
        (m1, r1), (m2, r2) = a, b
        half = (r2 - r1) / (r1 / m1 - r2 / m2)
        return cls(r1 * (m1 + half) / m1, half)

    @classmethod
    def flat(cls, rate: float) -> "RateCurve":
        """A rate that does not depend on the pack size (a CPU: one measured figure)."""
        return cls(rate, 0.0)

    def rate(self, models: int) -> float:
        return self.top * models / (models + self.half)


@dataclass(frozen=True)
class ProjectionRates:
    """What projections plan with, measured (BENCHMARKS.md): two packs' rates alone on one GPU and a
    Trainer run's start-up before its first step; the resolved config's `projection` section."""
    gpu: str                                      # the GPU they were measured on
    pack_rates: tuple[tuple[int, float], ...]     # (models in the pack, images a second)
    trainer_start_seconds: float

    @classmethod
    def from_config(cls, cfg: dict) -> "ProjectionRates":
        section = cfg["projection"]
        points = section["pack_rates"]
        if not (isinstance(points, list) and len(points) == 2 and all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) and v > 0 for v in p)
                for p in points) and points[0][0] != points[1][0]):
            raise ValueError(f"projection.pack_rates must be two [models, images per second] pairs of two "
                             f"pack sizes, not {points!r}")
        return cls(str(section["gpu"]), tuple((int(m), float(r)) for m, r in points),
                   float(section["trainer_start_seconds"]))

    @property
    def curve(self) -> RateCurve:
        return RateCurve.through(*self.pack_rates)


@dataclass(frozen=True)
class Layout:
    pack_size: int
    workers: int                   # packs per Trainer run (one worker, one GPU each)
    concurrent: int                # Trainer runs at once
    runs: int                      # Trainer runs in all (stages x groups)
    wall_seconds: float


def curve_for(device: str, rates: ProjectionRates, measured: float | None = None) -> RateCurve:
    """The rate curve to plan with: the measured GPU's on a GPU; on a CPU one measured figure
    (packs barely gain from size there), else a placeholder that only compares layouts."""
    if device.startswith("cuda"):
        return rates.curve
    return RateCurve.flat(measured or 1.0)


def slots_for(device: str, gpus: float, cpus: float, gpus_per_worker: float, cpus_per_worker: float) -> int:
    """How many workers (packs) the cluster runs at once."""
    if device.startswith("cuda"):
        return max(1, int(gpus / max(gpus_per_worker, 1e-9) + 1e-6))
    return max(1, int(cpus / max(cpus_per_worker, 1e-9) + 1e-6))


def workload(chains: list[list[PackJob]]) -> list[ChainKind]:
    """The plan's work still to do, as chain kinds (pack boundaries forgotten)."""
    kinds: dict[tuple, int] = {}
    for chain in chains:
        works = [pack_work(job) for job in chain]
        if not works or not works[0].models:
            continue
        per_model = tuple(w.epochs * w.steps * w.batch for w in works)
        key = (works[0].dataset, works[0].selection, per_model)
        kinds[key] = kinds.get(key, 0) + works[0].models
    return [ChainKind(d, s, p, n) for (d, s, p), n in kinds.items()]


def paper_workload(cfg: dict, folds: dict[str, int]) -> list[ChainKind]:
    """The same from a config alone, given each data set's fold count (no data needed): the
    units of plan.units_for, at steps_per_epoch x batch_size images an epoch."""
    from partfer.orchestrator.config import epochs_for, selections_of
    from partfer.orchestrator.networks import NETWORKS, stage_sequences
    tr = cfg["train"]
    if tr["steps_per_epoch"] is None:
        raise ValueError("paper_workload needs train.steps_per_epoch (one pass depends on the data)")
    per_epoch = int(tr["steps_per_epoch"]) * int(tr["batch_size"])
    selections = selections_of(cfg)
    # a twin trains its first stage with the main selection (plan.trajectory_key) unless the
    # kept epoch changes the training: a patience, or held-out subjects taken from its rows
    shares = tr["patience"] is None and "heldout_subjects" not in selections
    kinds = []
    for name, n_folds in folds.items():
        units: dict[tuple[str, ...], int] = {}
        for network in cfg["networks"]:
            spec = NETWORKS[network]
            units[spec.stages] = units.get(spec.stages, 0) + len(spec.members(cfg))
        for stages in stage_sequences():
            n = units.get(stages, 0)
            if not n:
                continue
            per_stage = tuple(epochs_for(cfg, name, s) * per_epoch for s in stages)
            if shares:       # one chain: the shared first stage, then each selection's later stages
                per_model = per_stage + per_stage[1:] * (len(selections) - 1)
                kinds.append(ChainKind(name, "+".join(selections), per_model, n * n_folds))
            else:
                kinds.extend(ChainKind(name, selection, per_stage, n * n_folds) for selection in selections)
    return kinds


def _groups(kinds: list[ChainKind], pack_size: int, workers: int, curve: RateCurve,
            start: float) -> list[float]:
    """Each Trainer group's duration: its stages one after another, each as long as its
    biggest pack plus a start-up."""
    durations = []
    for kind in kinds:
        full, rest = divmod(kind.units, pack_size)
        sizes = [pack_size] * full + ([rest] if rest else [])
        for i in range(0, len(sizes), workers):
            biggest = max(sizes[i:i + workers])
            durations.append(sum(biggest * work / curve.rate(biggest) + start for work in kind.per_model))
    return durations


def project(kinds: list[ChainKind], gpus: int, pack_size: int, workers: int, curve: RateCurve,
            start: float) -> Layout:
    """The wall time of one layout: groups longest first, each to the slot free soonest."""
    slots = max(1, gpus // workers)
    durations = sorted(_groups(kinds, pack_size, workers, curve, start), reverse=True)
    loads = [0.0] * slots
    for d in durations:
        loads[loads.index(min(loads))] += d
    stages = sum(len(k.per_model) * math.ceil(math.ceil(k.units / pack_size) / workers) for k in kinds)
    return Layout(pack_size, workers, min(slots, len(durations)), stages, max(loads) if durations else 0.0)


def choose(kinds: list[ChainKind], gpus: int, curve: RateCurve, start: float,
           pack_sizes: tuple[int, ...] = PACK_SIZES, workers: tuple[int, ...] = WORKERS) -> Layout:
    """The fastest layout; among equally fast ones (within 1 %), the biggest packs and the
    fewest Trainer runs."""
    options = [project(kinds, gpus, m, k, curve, start) for m in pack_sizes for k in workers if k <= max(1, gpus)]
    fastest = min(o.wall_seconds for o in options)
    near = [o for o in options if o.wall_seconds <= fastest * 1.01]
    return min(near, key=lambda o: (-o.pack_size, o.runs, o.workers))


__all__ = ["ChainKind", "Layout", "ProjectionRates", "RateCurve", "choose", "curve_for", "paper_workload", "project",
           "slots_for", "workload"]
