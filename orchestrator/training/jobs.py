"""What a pack's training is asked to do, as plain records: its stage settings, its models and how it
executes; and the arithmetic on them that needs no tensor (which rows, how many steps, what is done).

Imports no torch, directly or through anything it imports: the planner, the dry run and the
executors' bookkeeping read these records on machines and in processes that never train
(tests/orchestrator/training/test_jobs.py holds it to that).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from partfer.models.options import ExecOptions
from partfer.orchestrator.storage.store import is_done


@dataclass(frozen=True)
class AugmentSettings:
    hflip: bool = True
    rotation_deg: float = 15.0   # Keras rotation_range
    shift: float = 0.05          # Keras width/height_shift_range: a fraction of the image side
    shear_deg: float = 0.05      # Keras shear_range: an angle in degrees

    @classmethod
    def from_config(cls, cfg: dict) -> "AugmentSettings":
        known = ("hflip", "rotation_deg", "shift", "shear_deg")
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ValueError(f"unknown augmentation setting(s) {unknown}; known: {list(known)} "
                             "(shear is an angle in degrees: shear_deg)")
        return cls(**{k: cfg[k] for k in known if k in cfg})


@dataclass(frozen=True)
class StageSettings:
    stage: str                    # baseline | landmark | head | finetune
    lr: float
    max_epochs: int
    patience: int | None          # epochs without improvement before a model stops; None: never
    min_delta: float
    selection: str                # evaluated_fold | heldout_subjects | last (orchestrator.config.SELECTIONS)
    batch_size: int
    class_balanced: bool
    augment: AugmentSettings
    adam: dict
    # No defaults below: every value comes from the resolved config (orchestrator.execution.plan.stage_settings)
    steps_per_epoch: int | None   # None: one pass over the model's training rows (mean over the pack)
    frozen_bn: bool               # BN in inference mode (statistics neither used from the batch nor updated)
    eval_every: int
    checkpoint_every: int
    recalibrate_bn: bool          # under `last` only (kept_settings)
    checkpoint_seconds: float     # and at least this long since the last one (a big pack's state is costly to write)
    compact_stopped: bool         # stop computing stopped models once half the computed ones stopped
    landmark_targets: str         # crop | standardized: the landmark stage's regression units ("crop" elsewhere)


def kept_settings(settings: StageSettings, selection: str) -> StageSettings:
    """The settings of the model a training keeps under `selection` (what its key and meta.json record).

    BN statistics are recomputed (recalibrate_bn) only for the network kept at the last epoch. A
    selection that chose its epoch by a validation pass keeps the network that pass read, as the
    authors' checkpoint of the epoch with the best test-fold loss does: recomputing its statistics
    afterwards would change the figure it was chosen for."""
    return replace(settings, selection=selection,
                   recalibrate_bn=settings.recalibrate_bn and selection == "last")


@dataclass(frozen=True)
class ExecSettings:
    """How a pack computes, built once from the resolved config's train.* (its values: configs/run.yaml
    and configs/hardware/; orchestrator.execution.plan.exec_settings). None of it is part of any
    key: every choice trains the same models."""
    channels_last: bool
    deterministic: bool
    cudnn_benchmark: bool
    compile: str                  # off | a torch.compile mode for the training step's forward + loss
    fused_augment: str            # a batch gathered + augmented + normalised by one kernel (orchestrator.training.batches):
                                  # auto = on CUDA | on = wherever Triton runs (its interpreter on a CPU) | off
    network: ExecOptions          # how the network computes; its fuse: the fused BN kernels (models.kernels.fused_bn)

    def __post_init__(self) -> None:
        if self.fused_augment not in ("auto", "on", "off"):
            raise ValueError(f"fused augmentation mode must be auto, on or off, not {self.fused_augment!r}")


@dataclass(frozen=True)
class SharedOutput:
    """Another selection's model from the same training: the trajectory (rows, seed, upstream,
    settings) is the job's own and only the kept epoch differs, so one training serves both and
    each selection keeps its model under its own key."""
    selection: str
    key: str
    out_dir: str
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelJob:
    key: str
    out_dir: str
    seed: int
    region: str | None            # landmark region (face for FTL, a part for EL); None for Baseline
    fold: int
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    upstream_dir: str | None      # the previous stage's output (transfer stages 2 and 3)
    meta: dict = field(default_factory=dict)   # key inputs, written to meta.json
    shared: tuple[SharedOutput, ...] = ()      # other selections kept from this same training

    @property
    def out_dirs(self) -> tuple[str, ...]:
        """Every output directory the job's training writes: its own, then its shared ones'."""
        return (self.out_dir, *(o.out_dir for o in self.shared))

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key, *(o.key for o in self.shared))


@dataclass(frozen=True)
class PackJob:
    dataset: str
    prepared_dir: str
    classes: tuple[str, ...]
    stage: StageSettings
    models: tuple[ModelJob, ...]
    model_cfg: dict
    image_size: int
    device: str
    precision: str                # fp32 | bf16
    state_dir: str                # resumable pack state
    execution: ExecSettings
    label: str = ""               # its place in the run ("pack 3/26"), for progress lines only


@dataclass
class PackResult:
    stage: str
    keys: list[str]
    trained: int                  # model-stages written now (a shared training writes one per selection)
    epochs: list[int]
    seconds: float
    images: int                   # training images processed, summed over models
    setup_seconds: float = 0.0
    started: float = 0.0          # wall clock (time.time()) when the pack began
    step_plans: int = 0           # step plans the pack ran with (a new one each time its computed models change)
    kernel_fallbacks: dict[str, str] = field(default_factory=dict)   # switch -> why PyTorch's route ran instead


def pack_name(job: PackJob) -> str:
    """Which models a pack trains, for progress lines that interleave: its place in the run, the
    networks with their members, the folds and the model count, e.g.
    `pack 3/26 (ftl m0, el eyes+mouth; folds 0-4; 6 models)`."""
    members: dict[str, list[str]] = {}
    folds: set[int] = set()
    for model in job.models:
        network = str(model.meta.get("network", "?"))
        member = str(model.meta.get("member", model.region or "?"))
        if member not in members.setdefault(network, []):
            members[network].append(member)
        folds.add(model.fold)
    who = ", ".join(f"{network} {'+'.join(names)}" for network, names in members.items())
    place = f"{job.label} " if job.label else "pack "
    n = len(job.models)
    return f"{place}({who}; folds {_ranges(sorted(folds))}; {n} model{'' if n == 1 else 's'})"


def _ranges(values: list[int]) -> str:
    """0,1,2,4 -> '0-2,4'."""
    spans: list[list[int]] = []
    for v in values:
        if spans and v == spans[-1][1] + 1:
            spans[-1][1] = v
        else:
            spans.append([v, v])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def job_done(model: ModelJob) -> bool:
    """Whether every model the job's training keeps is already written."""
    return all(is_done(d) for d in model.out_dirs)


def pack_selections(job: PackJob) -> tuple[str, ...]:
    """The selections a pack's training serves: its own (stage.selection), then its models' shared ones."""
    found = [job.stage.selection] + [o.selection for m in job.models for o in m.shared]
    return tuple(dict.fromkeys(found))


def monitor_selection(selections: tuple[str, ...], patience: int | None) -> str:
    """The one selection whose monitored rows a shared training watches. Only `last` watches
    nothing (without a patience), so a training serves at most one other selection; with a
    patience the stopping epoch depends on the selection, so nothing can be shared."""
    watching = [s for s in selections if s != "last"]
    if len(selections) > 1 and (patience is not None or len(watching) > 1):
        raise ValueError(f"one training cannot serve the selections {', '.join(selections)}"
                         + (" with a patience (each stops on its own rows)" if patience is not None else ""))
    return watching[0] if watching else "last"


def monitored_rows(selection: str, model: ModelJob) -> tuple[int, ...]:
    """The rows whose loss picks a model's kept epoch (and stops it early, with a patience):
    evaluated_fold, the fold's test rows (the authors' way); heldout_subjects, the held-out
    training subjects; last, the held-out subjects if any, else the training rows (early stopping
    on the training loss)."""
    if selection == "evaluated_fold":
        return model.test
    if selection == "heldout_subjects" and not model.val:
        raise ValueError(f"{model.key}: selection heldout_subjects has no held-out subject in fold {model.fold} "
                         "(too few training subjects, or train.val_subject_fraction 0)")
    return model.val or model.train


def steps_per_epoch(settings: StageSettings, train_sizes: list[int]) -> int:
    """Optimizer steps in one epoch: the configured count, or one pass over the pack's mean
    number of training rows."""
    if settings.steps_per_epoch is not None:
        return int(settings.steps_per_epoch)
    return max(1, math.ceil(float(np.mean(train_sizes)) / settings.batch_size))


__all__ = ["AugmentSettings", "ExecSettings", "ModelJob", "PackJob", "PackResult", "SharedOutput", "StageSettings",
           "job_done", "monitor_selection", "monitored_rows", "pack_selections", "steps_per_epoch"]
