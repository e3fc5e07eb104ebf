"""Training one pack: M models of one data set and one stage, trained together as one network.

This module imports torch and our packages only (no Ray), so the same code runs inside a Ray task,
in the inline executor, and on a machine where Ray cannot be installed.

Each model keeps its own fold: its own training batches (drawn from its own training rows only,
class-balanced if asked), its own monitored rows (StageSettings.selection), its own early
stopping. A stopped model's slice of the packed weights is restored after every optimizer step,
so it no longer changes.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from partfer.data_prep.ibug68 import region_indices
from partfer.models.kernels import fused_bn
from partfer.models.config import ArchConfig
from partfer.models.losses import packed_cross_entropy, packed_l1_loss
from partfer.models.options import ExecOptions
from partfer.models.packed import FrozenSlices, PackedNetwork
from partfer.orchestrator.training.augment import AugmentSettings, normalise_pixels
from partfer.orchestrator.training.batches import augmented_batch, fused_available
from partfer.orchestrator.config import COMPILE_MODES
from partfer.orchestrator.records import PREDICTION_SCHEMA
from partfer.orchestrator.training.step_graph import PackStepper, graph_stream, make_capturable
from partfer.orchestrator.storage.store import (DONE_FILE, build_dir_for, is_done, join, local_file,
                                publish_dir, remove_dir, torch_save_atomic)
from partfer.orchestrator.training.pack_state import expected_state, resumable_state
from partfer.orchestrator.training.tensors import DeviceData, device_data

CLASSIFY_STAGES = ("baseline", "head", "finetune")


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
    recalibrate_bn: bool
    checkpoint_seconds: float     # and at least this long since the last one (a big pack's state is costly to write)
    compact_stopped: bool         # stop computing stopped models once half the computed ones stopped


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


def job_done(model: ModelJob) -> bool:
    """Whether every model the job's training keeps is already written."""
    return all(is_done(d) for d in model.out_dirs)


def pack_selections(job: "PackJob") -> tuple[str, ...]:
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
    channels_last: bool
    state_dir: str                # resumable pack state
    # Execution options, from the resolved config's train.* (orchestrator.execution.plan.pack_options;
    # their values: configs/run.yaml and configs/hardware/), so no defaults here
    deterministic: bool
    cudnn_benchmark: bool
    compile: str                  # off | a torch.compile mode for the training step's forward + loss
    fused_bn: bool                # BN -> ReLU [-> max-pool] as Triton kernels on CUDA packs (models.kernels.fused_bn)
    fused_grey_conv: bool         # ... with the grey first conv computed inside them (models.kernels.fused_grey)
    fused_augment: str            # a batch gathered + augmented + normalised by one kernel (orchestrator.training.batches):
                                  # auto = on CUDA | on = wherever Triton runs (its interpreter on a CPU) | off
    cuda_graphs: bool             # steps replayed as a captured CUDA graph (orchestrator.training.step_graph); CUDA only
    triton_conv: bool             # square grouped convs as Triton kernels (models.kernels.grouped_conv); where Triton runs


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
    step_plans: int = 0           # plans the steps ran with: what a graphed run captures
    graph_captures: int = 0       # CUDA graphs captured (train.cuda_graphs), one per plan of the pack
    graph_replays: int = 0        # steps run as graph replays (the rest ran eagerly)


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


def exec_options(job: PackJob) -> ExecOptions:
    """How the pack's network computes, from the job's train.* switches (models.options): the
    fused BN kernels where they pay (or never), the grey first conv inside them, Triton convs."""
    return ExecOptions(fuse="auto" if job.fused_bn else "off",
                       grey="fused" if job.fused_grey_conv else "auto",
                       conv="triton" if job.triton_conv else "torch")


def build_network(job: PackJob, models: list[ModelJob]) -> PackedNetwork:
    transfer = job.stage.stage != "baseline"
    landmark_outputs = [2 * len(region_indices(m.region)) for m in models] if transfer else None
    n_classes = None if job.stage.stage == "landmark" else len(job.classes)
    return PackedNetwork.from_arch(len(models), n_classes, landmark_outputs, ArchConfig.from_config(job.model_cfg),
                                   seeds=[m.seed for m in models], options=exec_options(job))


def _pad_rows(rows: list[tuple[int, ...]], device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(r) for r in rows))
    index = torch.zeros((len(rows), width), dtype=torch.int64)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        index[i, :len(r)] = torch.as_tensor(r, dtype=torch.int64)
        mask[i, :len(r)] = True
    return index.to(device), mask.to(device)


@dataclass(frozen=True)
class _Targets:
    """Per-model landmark target gathering: model m regresses the flat coordinates of its region.

    index, mask: (M, Lmax) flat coordinate indices of each model's region, and which are real."""
    index: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def for_models(cls, models: list[ModelJob], device) -> "_Targets":
        flat = []
        for m in models:
            pts = region_indices(m.region) if m.region else []
            flat.append([2 * p + c for p in pts for c in (0, 1)])
        return cls(*_pad_rows([tuple(f) for f in flat], device))

    def subset(self, models: torch.Tensor | None) -> "_Targets":
        """The same targets for the chosen models only (all of them when models is None)."""
        return self if models is None else _Targets(self.index[models], self.mask[models])

    def gather(self, landmarks: torch.Tensor) -> torch.Tensor:
        """landmarks (M, B, 68, 2) -> (B, M, Lmax) targets (zeros where padded)."""
        flat = landmarks.reshape(*landmarks.shape[:2], -1)
        idx = self.index[:, None, :].expand(-1, flat.shape[1], -1)
        return (flat.gather(2, idx) * self.mask[:, None, :]).transpose(0, 1)


def _forward(net: PackedNetwork, x: torch.Tensor, landmarks: bool, classes: bool,
             models: torch.Tensor | None = None):
    """One extractor pass feeding the heads the stage needs: (B, M, L) points, (B, M, C) logits.

    models: compute only these models (x holds their batches); see PackedNetwork.features.
    """
    feats = net.features(x, models=models).transpose(0, 1)                 # (M, B, F)
    pts = net.landmark_head(feats, models).transpose(0, 1) if landmarks else None
    logits = net.classifier(feats, models).transpose(0, 1) if classes else None
    return pts, logits


def _stage_loss(stage: str, net: PackedNetwork, pts, logits, labels_bm, targets_bm, valid_bm,
                models: torch.Tensor | None = None):
    """Per-model loss (M,): L1 on the model's own landmark region, or cross-entropy."""
    if stage == "landmark":
        mask = net.landmark_mask if models is None else net.landmark_mask[models]
        return packed_l1_loss(pts, targets_bm, mask, valid_bm)
    return packed_cross_entropy(logits, labels_bm.clamp(min=0), valid_bm)


def _training_loss(net: PackedNetwork, stage: str, x: torch.Tensor, labels_bm: torch.Tensor,
                   targets_bm: torch.Tensor | None, models: torch.Tensor | None):
    """The training step's forward pass: per-model losses (M,) and logits (None when landmarks)."""
    pts, logits = _forward(net, x, stage == "landmark", stage != "landmark", models)
    return _stage_loss(stage, net, pts, logits, labels_bm, targets_bm, None, models), logits


def training_loss_fn(mode: str):
    """_training_loss, compiled when asked. Inductor then generates its own kernels in place of the
    fused BN ones (models.kernels.fused_bn), which are faster, and each new shape (every pack, every
    cut of stopped models) pays a compilation: off by default (BENCHMARKS.md)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"train.compile must be one of {', '.join(COMPILE_MODES)}, not {mode!r}")
    if mode == "off":
        return _training_loss
    return torch.compile(_training_loss, mode=mode, dynamic=False)


def _autocast(job: PackJob):
    if job.precision == "bf16" and job.device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _as_input(images_mb: torch.Tensor, job: PackJob) -> torch.Tensor:
    """(M, B, S, S) float in [-1, 1] -> the packed network's (B, M, 1, S, S) layout."""
    x = images_mb.transpose(0, 1).unsqueeze(2)
    return x


@torch.no_grad()
def evaluate(job: PackJob, net: PackedNetwork, data: DeviceData, rows: list[tuple[int, ...]] | None,
             targets: _Targets | None, chunk: int = 256, models: torch.Tensor | None = None,
             outputs: bool = True, padded: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Loss, accuracy, probabilities and landmark points of every model on its own rows.

    The loss is the stage's loss (L1 for the landmark stage, cross-entropy otherwise); points are
    predicted whenever `targets` is given and the network has a landmark head. With `models`
    (an index tensor) only those models are evaluated: `rows` and `targets` are theirs.
    outputs=False: loss and accuracy only, read back in one copy at the end (early stopping's
    per-epoch check: the GPU's queue is drained once, not once per chunk). padded: the rows
    already as _pad_rows' device tensors (kept by the caller, so no host-to-device copy).
    """
    index, mask = padded if padded is not None else _pad_rows(rows, data.images.device)
    n_models, width = index.shape
    stage = job.stage.stage
    want_points = targets is not None and net.landmark_head is not None
    want_logits = net.classifier is not None
    loss_sum = torch.zeros(n_models, device=index.device)
    correct = torch.zeros(n_models, device=index.device)
    probs, points = [], []
    for start in range(0, width, chunk):
        idx, valid = index[:, start:start + chunk], mask[:, start:start + chunk]
        x = _as_input(normalise_pixels(data.images[idx]), job)
        with _autocast(job):
            pts, logits = _forward(net, x, want_points, want_logits, models)
        valid_bm = valid.t()
        labels_bm = data.labels[idx].t()
        targets_bm = targets.gather(data.landmarks[idx]) if targets is not None else None
        n_valid = valid.sum(1)
        loss_sum += _stage_loss(stage, net, pts, logits, labels_bm, targets_bm, valid_bm, models) * n_valid
        if logits is not None:
            logits = logits.float()
            correct += ((logits.argmax(-1) == labels_bm) & valid_bm).sum(0)
            if outputs:
                probs.append(torch.softmax(logits, -1).transpose(0, 1).cpu())   # (M, b, C)
        if pts is not None and outputs:
            points.append(pts.float().transpose(0, 1).cpu())                    # (M, b, L)
    counts = mask.sum(1).clamp(min=1).float()
    loss, acc = torch.stack([loss_sum / counts, correct / counts]).cpu()
    out = {"loss": loss, "acc": acc}
    if not outputs:
        return out
    out.update(mask=mask.cpu(), index=index.cpu())
    if probs:
        out["probs"] = torch.cat(probs, 1)
    if points:
        out["points"] = torch.cat(points, 1)
    return out


class _PerModelState:
    """Best weights per model, and the holding of stopped models at theirs."""

    def __init__(self, net: PackedNetwork, device: torch.device):
        self.net = net
        self.best = net.snapshot()
        # which models the write-back holds: changed in place as models stop (FrozenSlices)
        self.stopped = torch.zeros(net.n_models, dtype=torch.bool, device=device)
        self.frozen = net.frozen_slices(self.best, self.stopped)

    def snapshot(self, which: torch.Tensor) -> None:
        if which.any():
            self.net.capture_models_(self.best, which.cpu())

    def restore(self, which: torch.Tensor) -> None:
        if which.any():
            self.net.restore_models_(self.best, which.cpu())

    def hold(self, stopped: torch.Tensor) -> None:
        """Hold these models (a host mask) at their best slices from the next step on. Their
        best slices never change again: snapshot() is only ever given training models."""
        self.stopped.copy_(stopped)


@dataclass(frozen=True)
class StepPlan:
    """Everything a training step needs, already on the device. The pack's constants, and what
    changes only when models stop (rebuilt then, at an epoch's end): so a step issues GPU work
    without ever waiting for it. A wait drains the GPU's queue, and a compacted pack's small
    steps are then bound by the host."""
    stage: str                        # baseline | landmark | head | finetune
    batch_size: int
    augment: AugmentSettings
    images: torch.Tensor              # (N, S, S) uint8, the data set
    labels: torch.Tensor              # (N,) class indices (-1: none)
    landmarks: torch.Tensor | None    # (N, 68, 2): given for the landmark stage only
    fused_augment: bool               # the batch by one kernel (orchestrator.training.batches)
    input_dtype: torch.dtype          # what the fused kernel writes: the network's compute dtype
    channels_last: bool
    bf16: bool                        # autocast to bfloat16 (CUDA packs in bf16)
    computed: torch.Tensor            # (k,) the models the forward pass computes
    sub: torch.Tensor | None          # the same for the network's models= arguments; None: all
    weights: torch.Tensor             # (k, Tmax) sampling weight of each training row
    train_idx: torch.Tensor           # (k, Tmax) the rows
    targets: _Targets | None          # landmark targets of the computed models
    active: torch.Tensor              # (k,) bool: still training (the others' losses are dropped);
                                      # changed in place when models stop, as is frozen's mask
    frozen: FrozenSlices | None       # stopped models' slices, written back after each step


def train_step(net: PackedNetwork, opt: torch.optim.Optimizer, training_loss, plan: StepPlan,
               gen: torch.Generator, run_loss: torch.Tensor, run_correct: torch.Tensor) -> None:
    """One optimizer step of the computed models, each on a fresh augmented batch of its own rows;
    adds each model's loss (and correct count) to run_loss / run_correct, (M,) tensors. Reads
    nothing back from the device (tests/orchestrator/test_train_step.py holds it to that).
    training_loss: training_loss_fn(mode). bench/train_throughput.py times this very step."""
    k, b = plan.computed.numel(), plan.batch_size
    local = torch.multinomial(plan.weights, b, replacement=True, generator=gen)
    idx = plan.train_idx.gather(1, local)                                   # (k, B)
    x, lms = augmented_batch(plan.images, idx, plan.augment, gen, fused=plan.fused_augment,
                             dtype=plan.input_dtype, channels_last=plan.channels_last, landmarks=plan.landmarks)
    labels_bm = plan.labels[idx].t()
    targets_bm = plan.targets.gather(lms.view(k, b, 68, 2)) if lms is not None else None
    with torch.autocast(plan.images.device.type, dtype=torch.bfloat16, enabled=plan.bf16):
        loss_k, logits = training_loss(net, plan.stage, x, labels_bm, targets_bm, plan.sub)
    opt.zero_grad(set_to_none=True)
    (loss_k * plan.active).sum().backward()
    opt.step()
    if plan.frozen is not None:
        plan.frozen.apply_()          # Adam's momentum and BN's statistics must not move stopped models
    run_loss.index_add_(0, plan.computed, loss_k.detach().to(run_loss.dtype))
    if logits is not None:
        run_correct.index_add_(0, plan.computed, (logits.argmax(-1) == labels_bm).sum(0).to(run_correct.dtype))


@torch.no_grad()
def recalibrate_bn(job: PackJob, net: PackedNetwork, data: DeviceData, rows: list[tuple[int, ...]],
                   chunk: int = 256) -> None:
    """Recompute the extractor's BN running statistics with the final weights, over each model's
    own training rows (no augmentation).

    The running averages otherwise remember the early, large activations of a short run and make
    inference-mode features (the head stage's frozen extractor, validation, test) far off. At the
    paper's epoch counts the averages have long forgotten them, so this matters for shrunk runs.
    """
    bns = [m for m in net.extractor.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    width = max(len(r) for r in rows)
    cycled = torch.tensor([[r[i % len(r)] for i in range(width)] for r in rows], device=data.images.device)
    saved = [(bn.momentum, bn.num_batches_tracked.clone()) for bn in bns]
    modes = [(m, m.training) for m in net.modules()]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None                    # cumulative average over the passes below
    net.extractor.train()
    try:
        for start in range(0, width, chunk):
            idx = cycled[:, start:start + chunk]
            with _autocast(job):
                net.features(_as_input(normalise_pixels(data.images[idx]), job))
    finally:
        for bn, (momentum, tracked) in zip(bns, saved):
            bn.momentum = momentum
            bn.num_batches_tracked.copy_(tracked)
        for module, training in modes:
            module.training = training


def _load_upstream(net: PackedNetwork, models: list[ModelJob]) -> None:
    for i, m in enumerate(models):
        if m.upstream_dir:
            state = torch.load(local_file(join(m.upstream_dir, "checkpoint.pt")), map_location="cpu",
                               weights_only=True)
            net.load_model_state(i, state, strict_heads=False)


def _output_of(job: PackJob, model: ModelJob, selection: str) -> SharedOutput | None:
    """The model's output kept under `selection`, if it has one still to write."""
    if selection == job.stage.selection:
        out = SharedOutput(selection, model.key, model.out_dir, model.meta)
    else:
        out = next((o for o in model.shared if o.selection == selection), None)
    return None if out is None or is_done(out.out_dir) else out


def _write_outputs(job: PackJob, net: PackedNetwork, data: DeviceData, models: list[ModelJob],
                   history: list[list[dict]], test_eval: dict, epochs: list[int], selected: list[int],
                   selection: str) -> int:
    """Each model's outputs kept under `selection` (the network holds that selection's weights);
    returns how many were written."""
    prepared = data.prepared
    written = 0
    for i, m in enumerate(models):
        out = _output_of(job, m, selection)
        if out is None:
            continue
        build = build_dir_for(out.out_dir)
        torch.save({k: v.cpu() for k, v in net.model_state(i).items()}, build / "checkpoint.pt")
        rows = test_eval["index"][i][test_eval["mask"][i]].tolist()
        if "probs" in test_eval:
            probs = test_eval["probs"][i][test_eval["mask"][i]].numpy().astype(np.float32)
            table = pa.table({
                "sample_id": [prepared.sample_ids[r] for r in rows],
                "eval_dataset": [job.dataset] * len(rows),
                "fold": pa.array([m.fold] * len(rows), pa.int32()),
                "label": [prepared.labels[r] for r in rows],
                "probs": pa.array(list(probs), pa.list_(pa.float32())),
            }, schema=PREDICTION_SCHEMA)
            pq.write_table(table, build / "predictions.parquet")
        if "points" in test_eval and m.region:
            n_out = 2 * len(region_indices(m.region))
            pts = test_eval["points"][i][test_eval["mask"][i]][:, :n_out].numpy().astype(np.float32)
            flat_idx = [2 * p + c for p in region_indices(m.region) for c in (0, 1)]
            truth = prepared.landmarks.reshape(len(prepared.sample_ids), -1)[rows][:, flat_idx]
            known = np.asarray(prepared.landmarks_ok)[rows]          # the study compares real points only
            pq.write_table(pa.table({
                "sample_id": [prepared.sample_ids[r] for r, k in zip(rows, known) if k],
                "region": [m.region] * int(known.sum()),
                "pred": pa.array(list(pts[known]), pa.list_(pa.float32())),
                "truth": pa.array(list(truth[known].astype(np.float32)), pa.list_(pa.float32())),
            }), build / "landmarks.parquet")
        buf = io.StringIO()
        fields = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "stopped"]
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history[i])
        (build / "history.csv").write_text(buf.getvalue())
        meta = dict(out.meta, key=out.key, stage=job.stage.stage, epochs_trained=epochs[i],
                    selection=selection, selected_epoch=selected[i],
                    test_loss=float(test_eval["loss"][i]),
                    test_acc=float(test_eval["acc"][i]) if "probs" in test_eval else None,
                    n_train=len(m.train), n_val=len(m.val), n_test=len(m.test),
                    stage_settings=_jsonable(asdict(dataclasses.replace(job.stage, selection=selection))),
                    shared_with=[k for k in m.keys if k != out.key], finished=time.time())
        (build / DONE_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        publish_dir(build, out.out_dir)
        written += 1
    return written


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def run_pack(job: PackJob, log=print, on_epoch=None) -> PackResult:
    """Train (or resume) every not-yet-finished model of the pack and write its outputs.

    on_epoch(epoch, metrics) is called after each epoch with per-model lists (train_loss,
    train_acc, val_loss, val_acc, active); a Tune trial and the run's metrics files read it.
    """
    device = torch.device(job.device)
    if job.triton_conv and not fused_bn.runs_on(torch.empty(0, device=device)):
        log(f"train.triton_conv: Triton does not run on this {device.type} pack; PyTorch's convs instead")
    if job.cuda_graphs and device.type == "cuda":
        with graph_stream(device):           # a capture needs a side stream
            return _run_pack(job, log, on_epoch, graphs=True)
    if job.cuda_graphs:
        log(f"train.cuda_graphs needs CUDA: this {device.type} pack steps eagerly")
    return _run_pack(job, log, on_epoch, graphs=False)


def _run_pack(job: PackJob, log, on_epoch, graphs: bool) -> PackResult:
    t0 = time.time()
    models = [m for m in job.models if not job_done(m)]
    if not models:
        return PackResult(job.stage.stage, [k for m in job.models for k in m.keys], 0, [], 0.0, 0, started=t0)
    selections = pack_selections(job)
    watched = monitor_selection(selections, job.stage.patience)
    if job.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    device = torch.device(job.device)
    if device.type == "cuda":
        # Off by default: it buys no speed here but tunes again for every new shape, i.e. for
        # every pack and every time stopped models leave the computation (BENCHMARKS.md).
        torch.backends.cudnn.benchmark = job.cudnn_benchmark and not job.deterministic
    data = device_data(job.prepared_dir, job.image_size, job.device, list(job.classes))
    st = job.stage
    n_models = len(models)
    targets = _Targets.for_models(models, device) if st.stage != "baseline" else None

    net = build_network(job, models)
    _load_upstream(net, models)
    net.to(device)
    if job.channels_last:
        net.to(memory_format=torch.channels_last)
    params = net.trainable_parameters(st.stage)
    opt = torch.optim.Adam(params, lr=st.lr, betas=(st.adam["beta1"], st.adam["beta2"]), eps=st.adam["eps"],
                           capturable=graphs)
    per_model = _PerModelState(net, device)
    training_loss = training_loss_fn(job.compile)

    gen = torch.Generator(device=device)
    gen.manual_seed(int(models[0].seed) % (2**63))
    fused_aug = fused_available(data.images, job.fused_augment)
    input_dtype = torch.bfloat16 if job.precision == "bf16" and device.type == "cuda" else torch.float32
    train_idx, train_mask = _pad_rows([m.train for m in models], device)
    labels_train = data.labels[train_idx]
    if st.class_balanced and st.stage != "landmark":
        # weight each row by 1 / (its class's count in this model's training rows)
        onehot = F.one_hot(labels_train.clamp(min=0), len(job.classes)).float() * train_mask[..., None]
        counts = onehot.sum(1, keepdim=True).clamp(min=1)
        weights = (onehot / counts).sum(-1)
    else:
        weights = train_mask.float()
    weights = weights * (labels_train >= 0) if st.stage != "landmark" else weights
    monitor_rows = [monitored_rows(watched, m) for m in models]
    # a validation pass each epoch: to choose a kept epoch, or to stop early
    monitors = watched != "last" or st.patience is not None

    active = torch.ones(n_models, dtype=torch.bool)
    # The models the forward pass computes: always a superset of the active ones. A stopped model
    # costs as much as a training one while it is computed, so the set is cut down to the active
    # models whenever half of it has stopped: at most log2(M) shapes, each of which costs time
    # under train.compile or cuDNN autotuning.
    computed = torch.arange(n_models)
    last_val = {"loss": torch.full((n_models,), float("nan")), "acc": torch.full((n_models,), float("nan"))}
    best_loss = torch.full((n_models,), float("inf"))
    best_epoch = torch.zeros(n_models, dtype=torch.int64)
    last_epoch = torch.zeros(n_models, dtype=torch.int64)
    history: list[list[dict]] = [[] for _ in models]
    start_epoch = 0
    state_path = join(job.state_dir, "state.pt")
    saved = resumable_state(state_path, log, expected_state([m.key for m in models], net, opt, per_model.best, gen,
                                                           st.max_epochs))
    if saved is not None:
        if saved.get("keys") == [m.key for m in models]:
            net.load_state_dict(saved["net"])
            opt.load_state_dict(saved["opt"])
            for name, t in saved["best"].items():
                per_model.best[name].copy_(t.to(device))
            active, best_loss, best_epoch, last_epoch = (saved["active"], saved["best_loss"],
                                                        saved["best_epoch"], saved["last_epoch"])
            history, start_epoch = saved["history"], saved["epoch"]
            computed = saved.get("computed", computed)
            last_val = saved.get("last_val", last_val)
            gen.set_state(saved["gen"])
            if graphs:
                make_capturable(opt)      # the state may come from an eager run
            log(f"resumed {st.stage} pack of {n_models} at epoch {start_epoch}")

    steps = steps_per_epoch(st, [len(m.train) for m in models])
    # the pack's constants; the rest of the step's plan follows the models still training
    pack_plan = StepPlan(st.stage, st.batch_size, st.augment, data.images, data.labels,
                         data.landmarks if st.stage == "landmark" else None, fused_aug, input_dtype,
                         job.channels_last, job.precision == "bf16" and device.type == "cuda",
                         computed, None, weights, train_idx, targets, active, None)
    plan, plan_for, held_for = pack_plan, None, None
    # the step's accumulators: a captured step adds to these very tensors, zeroed every epoch
    run_loss = torch.zeros(n_models, device=device)
    run_correct = torch.zeros(n_models, device=device)
    stepper = PackStepper(lambda p: train_step(net, opt, training_loss, p, gen, run_loss, run_correct),
                          gen, opt, graphs=graphs)
    log_every = max(1, st.max_epochs // 5)
    setup = time.time() - t0
    images_seen = 0
    last_checkpoint = time.time()
    for epoch in range(start_epoch, st.max_epochs):
        if not active.any():
            break
        n_active = int(active.sum())
        if st.compact_stopped and n_active <= len(computed) // 2:
            computed = active.nonzero().flatten()
            log(f"{job.dataset} {st.stage} pack of {n_models}: {n_active} still training, "
                f"computing only those from epoch {epoch + 1}")
        # A new plan (and, with CUDA graphs, a new capture) only when the computed set changes or
        # the first model stops; later stops change the plan's tensors in place.
        if plan_for != (computed.tolist(), bool(active.all())):
            sub = None if len(computed) == n_models else net.model_index(computed)   # None: the full network
            comp_dev = computed.to(device)
            plan = dataclasses.replace(
                pack_plan, computed=comp_dev, sub=sub, weights=weights[comp_dev], train_idx=train_idx[comp_dev],
                targets=targets.subset(sub) if targets is not None else None,
                active=active[computed].to(device), frozen=None if active.all() else per_model.frozen)
            plan_for = (computed.tolist(), bool(active.all()))
            monitor = _pad_rows([monitor_rows[i] for i in computed.tolist()], device)
        if held_for != active.tolist():
            plan.active.copy_(active[computed])
            per_model.hold(~active)
            held_for = active.tolist()
        sub, targets_c = plan.sub, plan.targets
        net.set_stage_mode(st.stage, frozen_bn=st.frozen_bn)
        run_loss.zero_()
        run_correct.zero_()
        for _ in range(steps):
            stepper.step(plan)
        images_seen += steps * n_active * st.batch_size
        not_computed = torch.ones(n_models, dtype=torch.bool)
        not_computed[computed] = False
        # the epoch's figures stay on the device until the validation pass is queued behind them
        train_figures = torch.stack([run_loss / steps, run_correct / (steps * st.batch_size)])
        evaluating = monitors and ((epoch + 1) % st.eval_every == 0 or epoch + 1 == st.max_epochs)
        if evaluating:
            net.eval()
            ev = evaluate(job, net, data, None, targets_c if st.stage == "landmark" else None, models=sub,
                          outputs=False, padded=monitor)
        train_loss, train_acc = train_figures.cpu().masked_fill(not_computed, float("nan"))
        newly_stopped = torch.zeros_like(active)
        if evaluating:
            # models no longer computed have all stopped: they keep their last validation figures
            last_val = {name: last_val[name].index_put((computed,), ev[name].to(last_val[name].dtype))
                        for name in ("loss", "acc")}
            val_loss, val_acc = last_val["loss"], last_val["acc"]
            improved = (val_loss < best_loss - st.min_delta) & active
            best_loss = torch.where(improved, val_loss, best_loss)
            best_epoch = torch.where(improved, torch.tensor(epoch + 1), best_epoch)
            per_model.snapshot(improved.to(device))
            if st.patience is not None:
                newly_stopped = active & ((epoch + 1 - best_epoch) >= st.patience)
        else:
            val_loss = val_acc = torch.full((n_models,), float("nan"))
        for i in range(n_models):
            if active[i]:
                classify = st.stage != "landmark"
                history[i].append({"epoch": epoch + 1, "train_loss": float(train_loss[i]),
                                   "train_acc": float(train_acc[i]) if classify else "",
                                   "val_loss": float(val_loss[i]) if evaluating else "",
                                   "val_acc": float(val_acc[i]) if evaluating and classify else "",
                                   "lr": st.lr, "stopped": bool(newly_stopped[i])})
                last_epoch[i] = epoch + 1
        if on_epoch is not None:
            on_epoch(epoch + 1, {"train_loss": train_loss.tolist(), "val_loss": val_loss.tolist(),
                                 "train_acc": train_acc.tolist() if st.stage != "landmark" else None,
                                 "val_acc": val_acc.tolist() if st.stage != "landmark" else None,
                                 "active": (active & ~newly_stopped).tolist()})
        if newly_stopped.any():
            if watched != "last":
                per_model.restore(newly_stopped.to(device))
            else:
                per_model.snapshot(newly_stopped.to(device))
            active = active & ~newly_stopped
        if log_every and ((epoch + 1) % log_every == 0 or epoch + 1 == st.max_epochs):
            log(f"{job.dataset} {st.stage} pack of {n_models}: epoch {epoch + 1}/{st.max_epochs}, "
                f"{int(active.sum())} still training, train loss {float(train_loss.nanmean()):.4f}, "
                f"{time.time() - t0:.0f} s")
        if (st.checkpoint_every and (epoch + 1) % st.checkpoint_every == 0 and epoch + 1 < st.max_epochs
                and time.time() - last_checkpoint >= st.checkpoint_seconds):
            last_checkpoint = time.time()
            torch_save_atomic({"keys": [m.key for m in models], "net": net.state_dict(),
                               "opt": opt.state_dict(), "best": per_model.best, "active": active,
                               "best_loss": best_loss, "best_epoch": best_epoch, "last_epoch": last_epoch,
                               "history": history, "epoch": epoch + 1, "gen": gen.get_state(),
                               "computed": computed, "last_val": last_val}, state_path)
    stepper.close()
    if graphs:
        counts = stepper.counts()
        log(f"{job.dataset} {st.stage} pack of {n_models}: {counts['graph_replays']} steps replayed from "
            f"{counts['graph_captures']} CUDA graphs, {counts['eager_steps']} eager")
    written = 0
    # `last` first: its weights are those in the network now; the others restore their best epoch
    for selection in sorted(selections, key=lambda s: s != "last"):
        if selection != "last":
            per_model.restore(active.to(device))      # models that ran to the cap keep their best epoch
        if st.recalibrate_bn and st.stage != "head" and not st.frozen_bn:   # else the statistics are not this stage's
            recalibrate_bn(job, net, data, [m.train for m in models])
        net.eval()
        test_eval = evaluate(job, net, data, [m.test for m in models], targets if st.stage != "baseline" else None)
        selected = last_epoch if selection == "last" else best_epoch
        written += _write_outputs(job, net, data, models, history, test_eval, last_epoch.tolist(),
                                  selected.tolist(), selection)
    remove_dir(job.state_dir)
    seconds = time.time() - t0
    return PackResult(st.stage, [k for m in job.models for k in m.keys], written, last_epoch.tolist(), seconds,
                      images_seen, setup, started=t0, step_plans=stepper.plans, graph_captures=stepper.captures,
                      graph_replays=stepper.replays)
