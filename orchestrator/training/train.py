"""Training one pack: M models of one data set and one stage, trained together as one network.

This module imports torch and our packages only (no Ray), so the same code runs inside a Ray task,
in the inline executor, and on a machine where Ray cannot be installed. The pack's job records
(what to train, how to execute) are in orchestrator.training.jobs.

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
import time
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from partfer.data_prep.ibug68 import region_indices
from partfer.models.config import ArchConfig
from partfer.models.losses import packed_cross_entropy, packed_l1_loss
from partfer.models.options import ExecOptions
from partfer.models.packed import FrozenSlices, PackedNetwork
from partfer.orchestrator.config import COMPILE_MODES
from partfer.orchestrator.records import PREDICTION_SCHEMA
from partfer.orchestrator.storage.store import (DONE_FILE, build_dir_for, is_done, join, local_file,
                                                publish_dir, remove_dir, torch_save_atomic)
from partfer.orchestrator.training.augment import normalise_pixels
from partfer.orchestrator.training.batches import augmented_batch
from partfer.orchestrator.training.jobs import (AugmentSettings, ModelJob, PackJob, PackResult, SharedOutput,
                                                job_done, kept_settings, monitor_selection, monitored_rows, pack_name,
                                                pack_selections, steps_per_epoch)
from partfer.orchestrator.training.kernel_routes import pack_routes
from partfer.orchestrator.training.pack_state import PackState, expected_state, resumable_state
from partfer.orchestrator.training.tensors import DeviceData, device_data


# The smallest spread a standardized frame takes (crop units; 0.016 px of a 160 px crop): a
# model whose training points never move would otherwise divide by zero.
SPREAD_FLOOR = 1e-4


def build_network(job: PackJob, models: list[ModelJob], options: ExecOptions | None = None) -> PackedNetwork:
    """The pack's network for `models`, computing as `options` say (default: the job's)."""
    transfer = job.stage.stage != "baseline"
    landmark_outputs = [2 * len(region_indices(m.region)) for m in models] if transfer else None
    n_classes = None if job.stage.stage == "landmark" else len(job.classes)
    return PackedNetwork.from_arch(len(models), n_classes, landmark_outputs, ArchConfig.from_config(job.model_cfg),
                                   seeds=[m.seed for m in models], options=options or job.execution.network)


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


def target_frame(data: DeviceData, models: list[ModelJob], targets: _Targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Each model's standardized landmark frame from its own training rows: the mean shape
    (M, Lmax) and one spread a model (M,), the root mean variance of its coordinates. The points
    of a region vary by a few hundredths of the crop; regressed in crop units, each Adam step
    moves the outputs by about as much, so the stage hovers near the mean shape."""
    rows, mask = _pad_rows([m.train for m in models], data.landmarks.device)
    weight = mask.t().unsqueeze(-1).float()                          # (T, M, 1)
    pts = torch.where(weight > 0, targets.gather(data.landmarks[rows]), 0.0)   # (T, M, Lmax); padding's rows may be NaN
    count = weight.sum(0).clamp(min=1)
    center = (pts * weight).sum(0) / count
    var = (((pts - center) ** 2) * weight).sum(0) / count            # (M, Lmax)
    n_coords = targets.mask.sum(1).clamp(min=1)
    spread = ((var * targets.mask).sum(1) / n_coords).sqrt()
    return center, spread.clamp(min=SPREAD_FLOOR)


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
    nothing back from the device (tests/orchestrator/training/test_train_step.py holds it to that).
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
    own training rows (no augmentation); for the network kept at the last epoch only (kept_settings).

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
                   selection: str, kernel_fallbacks: dict[str, str]) -> int:
    """Each model's outputs kept under `selection` (the network holds that selection's weights);
    returns how many were written. kernel_fallbacks: the custom kernels that failed their check
    on this device (kernel_routes), named in meta.json when there are any."""
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
                    stage_settings=_jsonable(asdict(kept_settings(job.stage, selection))),
                    shared_with=[k for k in m.keys if k != out.key], finished=time.time())
        if kernel_fallbacks:
            meta["kernel_fallbacks"] = dict(kernel_fallbacks)
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
    t0 = time.time()
    models = [m for m in job.models if not job_done(m)]
    if not models:
        return PackResult(job.stage.stage, [k for m in job.models for k in m.keys], 0, [], 0.0, 0, started=t0)
    run = _PackRun(job, models, log, on_epoch, t0)
    state = run.resume()
    setup = time.time() - t0
    last_checkpoint = time.time()
    st = job.stage
    for epoch in range(state.epoch, st.max_epochs):
        if not state.active.any():
            break
        run.train_epoch(state, epoch)
        if (st.checkpoint_every and (epoch + 1) % st.checkpoint_every == 0 and epoch + 1 < st.max_epochs
                and time.time() - last_checkpoint >= st.checkpoint_seconds):
            last_checkpoint = time.time()
            run.save(state)
    written = run.finish(state)
    return PackResult(st.stage, [k for m in job.models for k in m.keys], written, state.last_epoch.tolist(),
                      time.time() - t0, run.images_seen, setup, started=t0, step_plans=run.step_plans,
                      kernel_fallbacks=dict(run.routes.fallbacks))


class _PackRun:
    """One pack's training, set up on its device: its resumable state (resume, save), one epoch
    at a time (train_epoch), and its outputs (finish). What changes from epoch to epoch is a PackState."""

    def __init__(self, job: PackJob, models: list[ModelJob], log, on_epoch, t0: float):
        self.job, self.models, self.log, self.on_epoch, self.t0 = job, models, log, on_epoch, t0
        self.selections = pack_selections(job)
        self.watched = monitor_selection(self.selections, job.stage.patience)
        execution = job.execution
        if execution.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        device = self.device = torch.device(job.device)
        if device.type == "cuda":
            # Off by default: it buys no speed here but tunes again for every new shape, i.e. for
            # every pack and every time stopped models leave the computation (BENCHMARKS.md).
            torch.backends.cudnn.benchmark = execution.cudnn_benchmark and not execution.deterministic
        self.routes = pack_routes(execution, device, log)
        data = self.data = device_data(job.prepared_dir, job.image_size, job.device, list(job.classes))
        st = job.stage
        n_models = self.n_models = len(models)
        self.targets = _Targets.for_models(models, device) if st.stage != "baseline" else None

        net = self.net = build_network(job, models, self.routes.network)
        _load_upstream(net, models)
        if st.stage == "landmark" and st.landmark_targets == "standardized":
            net.landmark_head.set_output_frame_(*target_frame(data, models, self.targets))
        net.to(device)
        if execution.channels_last:
            net.to(memory_format=torch.channels_last)
        params = net.trainable_parameters(st.stage)
        self.opt = torch.optim.Adam(params, lr=st.lr, betas=(st.adam["beta1"], st.adam["beta2"]),
                                    eps=st.adam["eps"])
        self.per_model = _PerModelState(net, device)
        self.training_loss = training_loss_fn(execution.compile)

        gen = self.gen = torch.Generator(device=device)
        gen.manual_seed(int(models[0].seed) % (2**63))
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
        self.weights = weights * (labels_train >= 0) if st.stage != "landmark" else weights
        self.train_idx = train_idx
        self.monitor_rows = [monitored_rows(self.watched, m) for m in models]
        # a validation pass each epoch: to choose a kept epoch, or to stop early
        self.monitors = self.watched != "last" or st.patience is not None
        self.steps = steps_per_epoch(st, [len(m.train) for m in models])
        # the pack's constants; the rest of the step's plan follows the models still training
        self.pack_plan = StepPlan(st.stage, st.batch_size, st.augment, data.images, data.labels,
                                  data.landmarks if st.stage == "landmark" else None, self.routes.fused_augment,
                                  input_dtype, execution.channels_last, job.precision == "bf16" and device.type == "cuda",
                                  torch.arange(n_models), None, self.weights, train_idx, self.targets,
                                  torch.ones(n_models, dtype=torch.bool), None)
        self.plan, self.plan_for, self.held_for, self.monitor = self.pack_plan, None, None, None
        # the step's accumulators, zeroed every epoch
        self.run_loss = torch.zeros(n_models, device=device)
        self.run_correct = torch.zeros(n_models, device=device)
        self.log_every = max(1, st.max_epochs // 5)
        self.images_seen = 0
        self.step_plans = 0
        self.state_path = join(job.state_dir, "state.pt")

    def resume(self) -> PackState:
        """The pack's state: from its last checkpoint when one fits the pack (its network, optimizer,
        best weights and generator restored too), else a fresh start."""
        fresh = PackState.start(self.n_models)
        saved = resumable_state(self.state_path, self.log,
                                expected_state([m.key for m in self.models], self.net, self.opt, self.per_model.best,
                                               self.gen, self.job.stage.max_epochs))
        if saved is None:
            return fresh
        self.net.load_state_dict(saved["net"])
        self.opt.load_state_dict(saved["opt"])
        for name, t in saved["best"].items():
            self.per_model.best[name].copy_(t.to(self.device))
        self.gen.set_state(saved["gen"])
        state = PackState.from_saved(saved, fresh)
        self.log(f"resumed {self.job.stage.stage} pack of {self.n_models} at epoch {state.epoch}")
        return state

    def save(self, state: PackState) -> None:
        """A checkpoint the pack can resume from (state.pt)."""
        torch_save_atomic(state.saved([m.key for m in self.models], self.net, self.opt, self.per_model.best,
                                      self.gen), self.state_path)

    def train_epoch(self, state: PackState, epoch: int) -> None:
        """Train epoch `epoch` (0-based) of every active model, evaluate where due, stop models whose
        patience ran out; `state` is updated in place."""
        job, st, device, n_models = self.job, self.job.stage, self.device, self.n_models
        net, per_model = self.net, self.per_model
        n_active = int(state.active.sum())
        # The models the forward pass computes: always a superset of the active ones. A stopped model
        # costs as much as a training one while it is computed, so the set is cut down to the active
        # models whenever half of it has stopped: at most log2(M) shapes, each of which costs time
        # under train.compile or cuDNN autotuning.
        if st.compact_stopped and n_active <= len(state.computed) // 2:
            state.computed = state.active.nonzero().flatten()
            self.log(f"{job.dataset} {st.stage} {pack_name(job)}: {n_active} still training, "
                     f"computing only those from epoch {epoch + 1}")
        computed, active = state.computed, state.active
        # A new plan only when the computed set changes or the first model stops; later stops
        # change the plan's tensors in place.
        if self.plan_for != (computed.tolist(), bool(active.all())):
            sub = None if len(computed) == n_models else net.model_index(computed)   # None: the full network
            comp_dev = computed.to(device)
            self.plan = dataclasses.replace(
                self.pack_plan, computed=comp_dev, sub=sub, weights=self.weights[comp_dev],
                train_idx=self.train_idx[comp_dev],
                targets=self.targets.subset(sub) if self.targets is not None else None,
                active=active[computed].to(device), frozen=None if active.all() else per_model.frozen)
            self.plan_for = (computed.tolist(), bool(active.all()))
            self.monitor = _pad_rows([self.monitor_rows[i] for i in computed.tolist()], device)
            self.step_plans += 1
        plan = self.plan
        if self.held_for != active.tolist():
            plan.active.copy_(active[computed])
            per_model.hold(~active)
            self.held_for = active.tolist()
        sub, targets_c = plan.sub, plan.targets
        net.set_stage_mode(st.stage, frozen_bn=st.frozen_bn)
        run_loss, run_correct, steps = self.run_loss, self.run_correct, self.steps
        run_loss.zero_()
        run_correct.zero_()
        for _ in range(steps):
            train_step(net, self.opt, self.training_loss, plan, self.gen, run_loss, run_correct)
        self.images_seen += steps * n_active * st.batch_size
        not_computed = torch.ones(n_models, dtype=torch.bool)
        not_computed[computed] = False
        # the epoch's figures stay on the device until the validation pass is queued behind them
        train_figures = torch.stack([run_loss / steps, run_correct / (steps * st.batch_size)])
        evaluating = self.monitors and ((epoch + 1) % st.eval_every == 0 or epoch + 1 == st.max_epochs)
        if evaluating:
            net.eval()
            ev = evaluate(job, net, self.data, None, targets_c if st.stage == "landmark" else None, models=sub,
                          outputs=False, padded=self.monitor)
        train_loss, train_acc = train_figures.cpu().masked_fill(not_computed, float("nan"))
        newly_stopped = torch.zeros_like(active)
        if evaluating:
            # models no longer computed have all stopped: they keep their last validation figures
            state.last_val = {name: state.last_val[name].index_put((computed,), ev[name].to(state.last_val[name].dtype))
                              for name in ("loss", "acc")}
            val_loss, val_acc = state.last_val["loss"], state.last_val["acc"]
            improved = (val_loss < state.best_loss - st.min_delta) & active
            state.best_loss = torch.where(improved, val_loss, state.best_loss)
            state.best_epoch = torch.where(improved, torch.tensor(epoch + 1), state.best_epoch)
            per_model.snapshot(improved.to(device))
            if st.patience is not None:
                newly_stopped = active & ((epoch + 1 - state.best_epoch) >= st.patience)
        else:
            val_loss = val_acc = torch.full((n_models,), float("nan"))
        for i in range(n_models):
            if active[i]:
                classify = st.stage != "landmark"
                state.history[i].append({"epoch": epoch + 1, "train_loss": float(train_loss[i]),
                                         "train_acc": float(train_acc[i]) if classify else "",
                                         "val_loss": float(val_loss[i]) if evaluating else "",
                                         "val_acc": float(val_acc[i]) if evaluating and classify else "",
                                         "lr": st.lr, "stopped": bool(newly_stopped[i])})
                state.last_epoch[i] = epoch + 1
        if self.on_epoch is not None:
            self.on_epoch(epoch + 1, {"train_loss": train_loss.tolist(), "val_loss": val_loss.tolist(),
                                      "train_acc": train_acc.tolist() if st.stage != "landmark" else None,
                                      "val_acc": val_acc.tolist() if st.stage != "landmark" else None,
                                      "active": (active & ~newly_stopped).tolist()})
        if newly_stopped.any():
            if self.watched != "last":
                per_model.restore(newly_stopped.to(device))
            else:
                per_model.snapshot(newly_stopped.to(device))
            state.active = active & ~newly_stopped
        state.epoch = epoch + 1
        if self.log_every and ((epoch + 1) % self.log_every == 0 or epoch + 1 == st.max_epochs):
            self.log(f"{job.dataset} {st.stage} {pack_name(job)}: epoch {epoch + 1}/{st.max_epochs}, "
                     f"{int(state.active.sum())} still training, train loss {float(train_loss.nanmean()):.4f}, "
                     f"{time.time() - self.t0:.0f} s")

    def finish(self, state: PackState) -> int:
        """Each selection's models written (their kept epoch's weights, test predictions, history,
        meta.json), the resumable state removed; returns how many were written."""
        job, st, net, data, models = self.job, self.job.stage, self.net, self.data, self.models
        written = 0
        # `last` first: its weights are those in the network now; the others restore their best epoch
        for selection in sorted(self.selections, key=lambda s: s != "last"):
            kept = kept_settings(st, selection)
            if selection != "last":
                # every model's chosen epoch, BN statistics included (`last` may have recomputed them)
                self.per_model.restore(torch.ones(self.n_models, dtype=torch.bool, device=self.device))
            if kept.recalibrate_bn and st.stage != "head" and not st.frozen_bn:   # else the statistics are not this stage's
                recalibrate_bn(job, net, data, [m.train for m in models])
            net.eval()
            test_eval = evaluate(job, net, data, [m.test for m in models],
                                 self.targets if st.stage != "baseline" else None)
            selected = state.last_epoch if selection == "last" else state.best_epoch
            written += _write_outputs(job, net, data, models, state.history, test_eval, state.last_epoch.tolist(),
                                      selected.tolist(), selection, self.routes.fallbacks)
        remove_dir(job.state_dir)
        return written
