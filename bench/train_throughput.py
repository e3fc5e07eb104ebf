#!/usr/bin/env python
"""Training-step throughput: one model per task (the naive baseline) against the packed path.

Runs the trainer's own step (orchestrator.training.train.train_step: class-balanced sampling from a
device-resident uint8 data set, on-device affine augmentation, forward, per-model loss, backward,
Adam), on synthetic data, with no Ray import, so it runs on a bare GPU machine:

    python bench/train_throughput.py                      # naive vs packed, auto: cuda if available
    python bench/train_throughput.py --variants all --check --profile --count-ops --json out.json
    python bench/train_throughput.py --device cpu --image-size 48 --pack 5 --steps 10

Variants (--variants, comma list or `all`):
    naive               1 model, fp32, NCHW: one model per task, the issue's baseline (augmentation by
                        PyTorch's ops, as in every session's naive figure)
    naive-bf16          1 model, bf16 autocast, channels-last
    packed              --pack models as one grouped-convolution network, bf16, channels-last (the trainer's path)
    packed-nchw         the same in NCHW
    packed-nobench      the same with cudnn.benchmark off
    packed-fold         the grey first conv as a folded 1-channel conv (PyTorch's depthwise kernels)
    packed-nosplit      widening grouped convs (16 -> 32 per model) as one conv, not split into square ones
    packed-repeat       the grey first conv fed 3 repeated channels, not 16 zero-padded ones
    packed-nofuse       BN, ReLU and max-pool as PyTorch's kernels, not the fused Triton ones
    packed-torchaug     the batch augmented by PyTorch's ops, not the one-kernel models/kernels/warp.py
    packed-splitcopy    split convs' outputs interleaved by a copy before the fused BN kernels (not read in place)
    packed-compile      torch.compile of the forward + loss (inductor, default mode)
    packed-compile-ro   torch.compile mode="reduce-overhead" (CUDA graphs)
    packed-x2           twice --pack models (does a bigger pack still help?)
    small               a tenth of --pack: what is left of a pack once early-stopped models left it
    small-x3            three such packs at once, in threads on their own CUDA streams (the inline
                        executor with train.gpus_per_pack 0.33)
    packed-stopped      half of the pack's models stopped but still computed, their saved slices
                        written back after every step (a pack between a stop and its compaction)

Prints images/s summed over models, the ratio to `naive`, peak GPU memory and the projected wall
time of the paper's full reproduction; --check compares a pack with separate networks on the
device (on CUDA also the fused kernels with PyTorch's);
--profile prints the packed step's most expensive kernels; --count-ops counts the host-side
ops and Triton launches of one packed step (PyTorch's kernels vs the fused ones); --tiles times the fused
BatchNorm kernels (models/kernels/fused_bn.py) for several tile sizes against PyTorch's BN + ReLU + max-pool
at the first block's shapes. With --json every finished variant is written at once, so a run cut
short by a time limit still leaves its results.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

if not __package__:                              # run as a script, maybe from a bare checkout
    from checkout import ensure_partfer_importable  # noqa: E402  (bench/, beside this script)
    ensure_partfer_importable()

import torch  # noqa: E402

from partfer import atomicio  # noqa: E402
from partfer.models.config import ArchConfig  # noqa: E402
from partfer.models.options import ExecOptions  # noqa: E402
from partfer.models.packed import PackedNetwork, model_view  # noqa: E402
from partfer.models.subnet import SubNetwork  # noqa: E402
from partfer.orchestrator.training.jobs import AugmentSettings  # noqa: E402
from partfer.orchestrator.training.batches import fused_available  # noqa: E402
from partfer.orchestrator.config import load_config  # noqa: E402
from partfer.orchestrator.training.train import StepPlan, train_step, training_loss_fn  # noqa: E402

# the network configs/paper.yaml trains (its pooling, BN and head settings)
PAPER_ARCH = ArchConfig.from_config(load_config("paper")["model"])

# ~75 million image-training-steps at the paper's epoch caps (Baseline + FTL + EL, all data sets).
PAPER_IMAGE_STEPS = 75e6
# JAFFE alone: 10 LOSO folds, ~172 training images per fold (6 steps of 32), 50 models per network
# over 300 epochs for each of Baseline, FTL and EL.
JAFFE_IMAGE_STEPS = 3 * 50 * 300 * 6 * 32

ALL = ("naive", "naive-bf16", "packed", "packed-nofuse", "packed-torchaug", "packed-splitcopy",
       "packed-nosplit", "packed-repeat", "packed-fold", "packed-nchw",
       "packed-nobench", "packed-x2", "packed-compile-ro", "packed-compile", "small", "small-x3", "packed-stopped")


def variant_settings(name: str, pack: int, device: str) -> dict:
    bf16 = "bf16" if device == "cuda" else "fp32"
    table = {
        "naive": dict(models=1, precision="fp32", channels_last=False, augment="torch"),
        "naive-bf16": dict(models=1, precision=bf16, channels_last=True),
        "packed": dict(models=pack, precision=bf16, channels_last=True),
        "packed-nofuse": dict(models=pack, precision=bf16, channels_last=True, fuse_mode="off"),
        "packed-torchaug": dict(models=pack, precision=bf16, channels_last=True, augment="torch"),
        "packed-splitcopy": dict(models=pack, precision=bf16, channels_last=True, interleave_mode="copy"),
        "packed-nchw": dict(models=pack, precision=bf16, channels_last=False),
        "packed-nobench": dict(models=pack, precision=bf16, channels_last=True, cudnn_benchmark=False),
        "packed-fold": dict(models=pack, precision=bf16, channels_last=True, grey_mode="fold"),
        "packed-nosplit": dict(models=pack, precision=bf16, channels_last=True, split_mode="off"),
        "packed-repeat": dict(models=pack, precision=bf16, channels_last=True, grey_mode="repeat"),
        "packed-x2": dict(models=2 * pack, precision=bf16, channels_last=True),
        "packed-compile": dict(models=pack, precision=bf16, channels_last=True, compile="default"),
        "packed-compile-ro": dict(models=pack, precision=bf16, channels_last=True, compile="reduce-overhead"),
        "small": dict(models=max(1, pack // 10), precision=bf16, channels_last=True),
        "small-x3": dict(models=max(1, pack // 10), precision=bf16, channels_last=True, concurrent=3),
        "packed-stopped": dict(models=pack, precision=bf16, channels_last=True, stopped=0.5),
    }
    if name not in table:
        raise SystemExit(f"unknown variant {name!r}; known: {', '.join(ALL)}")
    return table[name]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def make_step(n_models: int, device: str, image_size: int, batch: int, precision: str,
              channels_last: bool, compile: str | None = None, grey_mode: str = "auto",
              split_mode: str = "auto", fuse_mode: str = "auto", augment: str = "auto",
              interleave_mode: str = "auto", stopped: float = 0.0, n_images: int = 2048, n_classes: int = 7):
    """A closure doing one step of the trainer (orchestrator.training.train.train_step) for an M-model pack.
    augment: auto (the fused kernel on CUDA where it passed its self-test, as the trainer) | on
    (the fused kernel wherever Triton runs it) | torch (PyTorch's ops).
    precision: bf16 (autocast, as CUDA packs train) | fp32.
    stopped: the fraction of the models that stopped early but are still computed (their saved
    slices written back after each step, as between a stop and the pack's compaction).
    The closure carries .net and .run_loss for the checks."""
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(0)
    images = torch.randint(0, 256, (n_images, image_size, image_size), dtype=torch.uint8, device=dev)
    labels = torch.randint(0, n_classes, (n_images,), device=dev)
    options = ExecOptions(grey=grey_mode, split=split_mode, fuse=fuse_mode, interleave=interleave_mode)
    net = PackedNetwork.from_arch(n_models, n_classes, None, PAPER_ARCH, seeds=list(range(n_models)),
                                  options=options).to(dev)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.set_stage_mode("baseline")
    opt = torch.optim.Adam(net.trainable_parameters("baseline"), lr=1e-3, eps=1e-7)
    if augment not in ("auto", "on", "torch"):
        raise ValueError(f"augment must be auto, on or torch, not {augment!r}")
    use_bf16 = precision == "bf16"
    active = torch.arange(n_models) >= int(stopped * n_models)
    plan = StepPlan(
        stage="baseline", batch_size=batch, augment=AugmentSettings(), images=images, labels=labels,
        landmarks=None, fused_augment=augment != "torch" and fused_available(images, augment),
        input_dtype=torch.bfloat16 if use_bf16 else torch.float32, channels_last=channels_last, bf16=use_bf16,
        computed=torch.arange(n_models, device=dev), sub=None,
        weights=torch.ones(n_models, n_images, device=dev),
        train_idx=torch.arange(n_images, device=dev).expand(n_models, -1).contiguous(), targets=None,
        active=active.to(dev),
        frozen=net.frozen_slices(net.snapshot(), (~active).to(dev)) if not active.all() else None)
    training_loss = training_loss_fn(compile or "off")      # the trainer's (compiled) step
    run_loss = torch.zeros(n_models, device=dev)
    run_correct = torch.zeros(n_models, device=dev)

    def step():
        train_step(net, opt, training_loss, plan, gen, run_loss, run_correct)

    step.net, step.run_loss, step.plan = net, run_loss, plan
    return step


def measure(name: str, n_models: int, device: str, image_size: int, batch: int, steps: int, warmup: int,
            precision: str, channels_last: bool, compile: str | None = None,
            cudnn_benchmark: bool = True, grey_mode: str = "auto", split_mode: str = "auto",
            fuse_mode: str = "auto", augment: str = "auto", interleave_mode: str = "auto",
            concurrent: int = 1, stopped: float = 0.0) -> dict:
    """Images/s of `concurrent` packs of n_models, each stepping in its own thread and CUDA stream
    (images of every computed model, stopped ones included: the rate of the step)."""
    import threading
    if device == "cuda":
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    steppers = [make_step(n_models, device, image_size, batch, precision, channels_last, compile, grey_mode,
                          split_mode, fuse_mode, augment, interleave_mode, stopped)
                for _ in range(concurrent)]

    def run(step, n: int) -> None:
        if device != "cuda":
            for _ in range(n):
                step()
            return
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())     # the data set was made on the default stream
        with torch.cuda.stream(stream):
            for _ in range(n):
                step()
        stream.synchronize()

    def timed(n: int) -> float:
        t0 = time.perf_counter()
        if concurrent == 1:
            run(steppers[0], n)
        else:
            threads = [threading.Thread(target=run, args=(step, n)) for step in steppers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        _sync(device)
        return time.perf_counter() - t0

    warmup_s = timed(warmup)
    seconds = timed(steps)
    rate = concurrent * n_models * batch * steps / seconds
    return {"variant": name, "models": n_models, "concurrent": concurrent, "stopped": stopped,
            "precision": precision,
            "channels_last": channels_last,
            "compile": compile, "grey_mode": grey_mode, "split_mode": split_mode, "fuse_mode": fuse_mode,
            "interleave_mode": interleave_mode,
            "augment": "fused" if augment == "auto" and fused_available(
                torch.zeros(1, dtype=torch.uint8, device=device), "auto") else "torch",
            "cudnn_benchmark": cudnn_benchmark if device == "cuda" else None,
            "images_per_s": round(rate, 1), "step_ms": round(1000 * seconds / steps, 2),
            "warmup_s": round(warmup_s, 1),
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None}


def check_equivalence(device: str, image_size: int, n_models: int = 3, batch: int = 8) -> dict:
    """Largest relative difference between a pack and separate networks (fp32, TF32 off):
    in the logits, and in each model's whole gradient (all its parameters as one vector)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gen = torch.Generator().manual_seed(0)
    nets = [SubNetwork.from_arch(7, None, PAPER_ARCH, seed=s).to(device) for s in range(n_models)]
    packed = PackedNetwork.from_subnetworks(nets)
    for net in nets:
        net.train()
    packed.train()
    x = torch.randn(batch, n_models, 3, image_size, image_size, generator=gen).to(device)
    y = torch.randint(0, 7, (batch, n_models), generator=gen).to(device)
    logits = packed.classify(x)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").backward()
    packed_params = dict(packed.named_parameters())
    worst = {"logits": 0.0, "grad": 0.0}
    for m, net in enumerate(nets):
        ref = net.classify(x[:, m])
        torch.nn.functional.cross_entropy(ref, y[:, m], reduction="sum").backward()
        worst["logits"] = max(worst["logits"], float((logits[:, m] - ref).detach().norm() / ref.detach().norm()))
        ours, theirs = [], []
        for name, p in net.named_parameters():
            grad = packed_params[name].grad
            if grad is None:         # a conv bias in front of training-mode BN: no gradient
                assert p.grad is None, name
                continue
            if name.startswith("extractor."):
                g = model_view(grad, n_models)[m]
            elif name.endswith("weight"):             # heads: (M, in, out) packed, (out, in) plain
                g = grad[m, :, : p.shape[0]].T
            else:
                g = grad[m, : p.shape[0]]
            ours.append(g.reshape(-1))
            theirs.append(p.grad.reshape(-1))
        ours_v, theirs_v = torch.cat(ours), torch.cat(theirs)
        worst["grad"] = max(worst["grad"], float((ours_v - theirs_v).norm() / theirs_v.norm()))
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return {k: float(f"{v:.3g}") for k, v in worst.items()}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Norm of the difference over the norm of the reference."""
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def check_training(device: str, image_size: int = 48, n_models: int = 3, batch: int = 6, steps: int = 3,
                   fuse: str = "auto") -> dict:
    """Train copies of one pack for a few SGD steps on the same grey batches (fp32, TF32 off):
    PyTorch's kernels (fuse off) against the fused BN kernels (reading split convs' outputs
    in place) with the grey input padded ("pad"). Relative differences (norm of the
    difference over norm) of all parameters as one vector, of all BN running statistics, and of
    eval-mode logits afterwards, and the largest parameter difference: the fused kernels must
    train the same network."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gen = torch.Generator().manual_seed(1)
    base = PackedNetwork.from_arch(n_models, 7, None, PAPER_ARCH, seeds=list(range(n_models))).train()
    with torch.no_grad():
        for name, p in base.named_parameters():
            if name.endswith("bias") and ".conv" in name:
                p.uniform_(-0.5, 0.5, generator=gen)    # biases a mistake in the running mean would show
    base.to(device)
    batches = [(torch.rand(batch, n_models, 1, image_size, image_size, generator=gen).to(device),
                torch.randint(0, 7, (batch, n_models), generator=gen).to(device)) for _ in range(steps)]
    probe = torch.rand(batch, n_models, 1, image_size, image_size, generator=gen).to(device)

    def train(fuse_mode: str, grey_mode: str) -> tuple[list, list, torch.Tensor]:
        # as on CUDA with the fused kernels: widening convs split, read in place by the kernels
        options = ExecOptions(fuse=fuse_mode, grey=grey_mode, split="on" if fuse_mode != "off" else "auto")
        net = PackedNetwork.from_arch(n_models, 7, None, PAPER_ARCH, seeds=list(range(n_models)),
                                      options=options).to(device)
        net.load_state_dict(base.state_dict())      # base's weights, biases and statistics exactly
        opt = torch.optim.SGD(net.parameters(), lr=0.01)      # small steps: a smooth path to compare
        for x, y in batches:
            loss = torch.nn.functional.cross_entropy(net.classify(x).flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
        params = [p.detach().clone() for p in net.parameters()]
        stats = [b.clone() for n, b in net.named_buffers() if "running" in n]
        with torch.no_grad():
            logits = net.eval().classify(probe)
        return params, stats, logits

    ref = train("off", "auto")
    got = train(fuse, "pad")
    flat = [torch.cat([t.flatten() for t in ts]) for ts in (got[0], ref[0], got[1], ref[1])]
    diffs = {"params": _rel(flat[0], flat[1]), "running_stats": _rel(flat[2], flat[3]),
             "eval_logits": _rel(got[2], ref[2]), "params_max_abs": float((flat[0] - flat[1]).abs().max())}
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return {"pad": {k: float(f"{v:.3g}") for k, v in diffs.items()}}


def count_host_ops(device: str, image_size: int = 32, n_models: int = 3, batch: int = 4) -> dict:
    """Host-side work of one packed training step, by kernel path: aten ops dispatched (views
    left out: they launch nothing) and Triton kernel launches. Each costs the host a few
    microseconds whatever the pack's size, so they bound the step rate of small packs (a
    compacted pack's tail) and of packs sharing a GPU from threads of one process. The counts
    do not depend on the pack's size; on a CPU the fused path needs TRITON_INTERPRET=1."""
    import collections

    from torch.utils._python_dispatch import TorchDispatchMode

    from partfer.models.kernels import fused_bn, warp
    modules = (fused_bn, warp)       # each calls launch by its own name
    views = {"view", "select", "slice", "detach", "transpose", "unsqueeze", "unflatten", "permute", "expand",
             "as_strided", "alias", "t", "_unsafe_view", "squeeze", "reshape", "flatten", "split", "unbind"}
    launches = {"n": 0, "counting": True}
    original = fused_bn.launch

    def counted_launch(*args, **kwargs):
        # the interpreter (CPU) runs a kernel through torch ops of its own: not the step's
        launches["n"] += 1
        launches["counting"] = False
        try:
            return original(*args, **kwargs)
        finally:
            launches["counting"] = True

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if launches["counting"]:
                self.ops[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    out = {}
    for module in modules:
        module.launch = counted_launch
    try:
        for name, fuse in (("pytorch_kernels", "off"), ("fused_kernels", "on" if device == "cpu" else "auto")):
            step = make_step(n_models, device, image_size, batch, "bf16" if device == "cuda" else "fp32", True,
                             fuse_mode=fuse, split_mode="on")
            step()
            step()
            launches["n"] = 0
            with Count() as counter:
                step()
            _sync(device)
            ops = sum(n for op, n in counter.ops.items() if op not in views)
            out[name] = {"aten_ops": ops, "triton_launches": launches["n"],
                         "by_op": dict(counter.ops.most_common())}
    finally:
        for module in modules:
            module.launch = original
    return out


def profile(device: str, image_size: int, batch: int, pack: int, rows: int = 25) -> str:
    """The packed eager step's kernels by device time (what to attack next)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    step = make_step(pack, device, image_size, batch, "bf16" if device == "cuda" else "fp32", True)
    for _ in range(3):
        step()
    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with torch_profile(activities=activities, record_shapes=True) as prof:
        for _ in range(5):
            step()
        _sync(device)
    averages = prof.key_averages()
    key = "self_cpu_time_total"
    total_key = "cpu_time_total"
    if device == "cuda":
        key = next((k for k in ("self_device_time_total", "self_cuda_time_total")
                    if averages and hasattr(averages[0], k)), "self_cpu_time_total")
        total_key = key.replace("self_", "")
    kernels = averages.table(sort_by=key, row_limit=rows, max_name_column_width=70)
    # each convolution by its input shapes: which layer pays for the layout transforms
    by_shape = [e for e in prof.key_averages(group_by_input_shape=True)
                if e.key in ("aten::cudnn_convolution", "aten::convolution_backward", "aten::_convolution",
                             "aten::mkldnn_convolution", "aten::max_pool2d_with_indices_backward",
                             "aten::native_batch_norm", "aten::native_batch_norm_backward")]
    by_shape.sort(key=lambda e: -getattr(e, total_key, 0.0))
    lines = [f"{'op':<42} {'total ms (5 steps)':>18} {'calls':>6}  input shapes"]
    for e in by_shape[:24]:
        lines.append(f"{e.key:<42} {getattr(e, total_key, 0.0) / 1000:>18.2f} {e.count:>6}  {str(e.input_shapes)[:150]}")
    return kernels + "\n" + "\n".join(lines)


def _time_cuda(fn, reps: int) -> float:
    """Mean milliseconds of fn() on the device (after one untimed call)."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def tile_sweep(pack: int, batch: int, image_size: int, reps: int = 10) -> list[dict]:
    """Forward + backward of BN -> ReLU [-> 3x3/2 max-pool] on the first block's activation
    (batch, 16 * pack channels, image_size^2, bf16, channels-last): PyTorch's kernels, then the
    fused ones for each tile setting. Milliseconds per call; a sweep, not a training step."""
    import itertools

    import torch.nn.functional as F

    from partfer.models.kernels import fused_bn
    dev = torch.device("cuda")
    c = 16 * pack
    y = torch.randn(batch, c, image_size, image_size, device=dev, dtype=torch.bfloat16)
    y = y.contiguous(memory_format=torch.channels_last).requires_grad_()
    weight = torch.ones(c, device=dev, requires_grad=True)
    bias = torch.zeros(c, device=dev, requires_grad=True)
    rows = []
    for pool in (None, (3, 2, 0)):
        def eager():
            z = F.batch_norm(y, None, None, weight, bias, True, 0.0, 1e-3)
            z = F.max_pool2d(z, *pool) if pool else z
            out = F.relu(z)
            out.backward(torch.ones_like(out))
        ms = _time_cuda(eager, reps)
        rows.append({"kernels": "pytorch", "pool": bool(pool), "ms": round(ms, 3)})
        print(f"  tiles: pytorch pool={bool(pool)} {ms:.3f} ms", flush=True)
    saved = dict(fused_bn.TILES)
    grid = itertools.product((32, 64, 128), (16, 32), (4, 8))
    extra = [(64, 32, 4, 128, 1024), (64, 32, 4, 1024, 1024), (64, 32, 4, 256, 512), (64, 32, 4, 256, 2048)]
    settings = [(r, ch, w, 256, 1024) for r, ch, w in grid] + extra
    try:
        for r, ch, w, per, progs in settings:
            fused_bn.TILES.update(rows=r, channels=ch, warps=w, rows_per_program=per, stat_programs=progs)
            for pool in (None, (3, 2, 0)) if (r, ch, w, per, progs) == (64, 32, 4, 256, 1024) else ((3, 2, 0),):
                def fused():
                    out = fused_bn.bn_relu(y, weight, bias, 1e-3, pool)[0]
                    out.backward(torch.ones_like(out))
                try:
                    ms = _time_cuda(fused, reps)
                except Exception as exc:        # a tile the compiler rejects: noted, sweep goes on
                    rows.append({"kernels": "fused", "tiles": dict(fused_bn.TILES), "pool": bool(pool),
                                 "error": f"{type(exc).__name__}: {exc}"[:300]})
                    continue
                rows.append({"kernels": "fused", "tiles": dict(fused_bn.TILES), "pool": bool(pool),
                             "ms": round(ms, 3)})
                print(f"  tiles: {fused_bn.TILES} pool={bool(pool)} {ms:.3f} ms", flush=True)
    finally:
        fused_bn.TILES.update(saved)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--pack", type=int, default=50, help="models in the packed variants")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--variants", default="naive,packed", help=f"comma list or 'all': {', '.join(ALL)}")
    p.add_argument("--check", action="store_true", help="compare a pack with separate networks first")
    p.add_argument("--profile", action="store_true", help="print the packed step's top kernels")
    p.add_argument("--tiles", action="store_true", help="time the fused BN kernels' tile sizes (CUDA)")
    p.add_argument("--count-ops", action="store_true",
                   help="count the host-side ops and kernel launches of one packed step, by kernel path")
    p.add_argument("--json", help="write the results here (after every variant)")
    args = p.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    names = list(ALL) if args.variants == "all" else [v.strip() for v in args.variants.split(",") if v.strip()]
    for name in names:
        variant_settings(name, args.pack, device)          # fail on a typo before measuring anything
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    out: dict = {"device": device, "gpu": gpu, "torch": torch.__version__,
                 "cudnn": torch.backends.cudnn.version() if device == "cuda" else None,
                 "image_size": args.image_size, "batch_per_model": args.batch, "steps": args.steps,
                 "host_cpus": os.cpu_count(), "results": [], "errors": {}}

    def save():
        if args.json:
            atomicio.write_text(args.json, json.dumps(out, indent=2))

    print(f"device {device} {gpu or ''} torch {torch.__version__} image {args.image_size} "
          f"batch {args.batch}/model", flush=True)
    if args.check:
        out["check"] = check_equivalence(device, min(args.image_size, 64))
        print(f"  pack vs separate networks (fp32): relative difference {out['check']}", flush=True)
        if device == "cuda":
            out["check_training"] = check_training(device)
            print(f"  fused kernels vs PyTorch's, 3 SGD steps (fp32): relative difference {out['check_training']}",
                  flush=True)
        save()
    if args.count_ops:
        try:
            out["host_ops"] = count_host_ops(device)
            for path, counts in out["host_ops"].items():
                print(f"  host work per packed step, {path}: {counts['aten_ops']} aten ops, "
                      f"{counts['triton_launches']} Triton launches", flush=True)
        except Exception as exc:      # e.g. a CPU without TRITON_INTERPRET=1: the variants still run
            out["errors"]["count_ops"] = f"{type(exc).__name__}: {exc}"
            print(f"  count-ops: FAILED {out['errors']['count_ops']}", flush=True)
        save()
    def sweep(key: str, fn) -> None:
        """out[key] = fn(), saved; a failure is recorded and the rest of the bench still runs."""
        try:
            out[key] = fn(args.pack, args.batch, args.image_size)
        except Exception as exc:
            out["errors"][key] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        save()

    if args.tiles and device == "cuda":
        sweep("tiles", tile_sweep)
    for name in names:
        settings = variant_settings(name, args.pack, device)
        try:
            r = measure(name, device=device, image_size=args.image_size, batch=args.batch, steps=args.steps,
                        warmup=args.warmup, n_models=settings.pop("models"), **settings)
        except Exception as exc:                 # one broken variant (e.g. a compiler) must not hide the rest
            out["errors"][name] = f"{type(exc).__name__}: {exc}"
            print(f"  {name}: FAILED {out['errors'][name]}", flush=True)
            traceback.print_exc()
            save()
            continue
        out["results"].append(r)
        print(f"  {name:<18} M={r['models']:<4}x{r['concurrent']} {r['images_per_s']:>9.1f} img/s {r['step_ms']:>8.2f} ms/step "
              f"(warm-up {r['warmup_s']} s)" + (f" peak {r['peak_gpu_mb']} MB" if r["peak_gpu_mb"] else ""),
              flush=True)
        if args.profile and name == "packed":    # before the slow compile variants, which a limit may cut
            out["profile"] = profile(device, args.image_size, args.batch, args.pack)
            print(out["profile"], flush=True)
        save()
    by_name = {r["variant"]: r for r in out["results"]}
    if "naive" in by_name:
        base = by_name["naive"]["images_per_s"]
        for r in out["results"]:
            r["ratio_to_naive"] = round(r["images_per_s"] / base, 2)
            r["projected_paper_hours"] = round(PAPER_IMAGE_STEPS / r["images_per_s"] / 3600, 2)
            r["projected_jaffe_minutes"] = round(JAFFE_IMAGE_STEPS / r["images_per_s"] / 60, 1)
    if args.profile and "profile" not in out:
        out["profile"] = profile(device, args.image_size, args.batch, args.pack)
        print(out["profile"], flush=True)
    save()
    print(f"\n{'variant':<18} {'M':>4} {'img/s':>10} {'x naive':>8} {'paper h':>8} {'JAFFE min':>9} {'peak MB':>8}")
    for r in out["results"]:
        print(f"{r['variant']:<18} {r['models']:>4} {r['images_per_s']:>10.1f} {r.get('ratio_to_naive', '-'):>8} "
              f"{r.get('projected_paper_hours', '-'):>8} {r.get('projected_jaffe_minutes', '-'):>9} "
              f"{r['peak_gpu_mb'] or '-':>8}")
    for name, err in out["errors"].items():
        print(f"{name:<18} failed: {err}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
