"""Training-mode BatchNorm fused with its ReLU (and the block's max-pool), as Triton kernels.

Why: PyTorch's BatchNorm, ReLU and max-pool kernels are each a separate pass over a pack's
activations (which are large at 160 px), and max-pool keeps int64 indices; in a pack's training
step they outweigh the convolutions (the profile is in BENCHMARKS.md). Here:

  forward:  1 pass for the per-channel statistics, 1 pass that normalises, applies ReLU and (in
            the pooled blocks) max-pools, writing only the pooled output and a 1-byte in-window
            offset of each maximum (-1 where ReLU zeroes it);
  backward: 2 passes (per-channel sums of dz and dz * x-centred, then dy), each finding dz from
            the pooled gradient by gathering over the <= 4 windows that cover a pixel.

Between the passes one tiny kernel turns the per-program partial sums into the per-channel
coefficients (and, forward, updates the running statistics) instead of a string of small PyTorch
ops, which keeps the host-side op count of a step near PyTorch's own path
(`bench/train_throughput.py --count-ops`; BENCHMARKS.md).

Same function as conv -> nn.BatchNorm2d (training mode) -> ReLU [-> max-pool, models.pooling], in
the order the extractor runs them (ReLU after the pool commutes with it): the first maximum in a
window wins ties, as in PyTorch; statistics and all arithmetic are float32 whatever the activation
dtype. Activations are channels-last, seen as a (pixels, channels) matrix; the input may also be the two
outputs of a widening conv computed as two square ones (models.extractor.split_conv), read where
they lie and given their gradients there, which saves interleaving them into one tensor (a copy
forward and one backward). NaNs are not propagated through the pool (a diverged run is caught by
its loss).

The kernels are compiled by Triton on CUDA; on a CPU they run in Triton's interpreter (slow, for
tests only). `available(x)` says whether the fused path can take a tensor.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from partfer.models.pooling import SAME, MaxPool, check_pool, pool_geometry

try:  # Triton ships with CUDA builds of torch; without it the extractor keeps PyTorch's kernels
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

# Tile sizes (pixels x channels) and warps, chosen by bench/train_throughput.py --tiles (BENCHMARKS.md).
TILES = {"rows": 64, "channels": 32, "divide": True, "warps": 4, "rows_per_program": 256, "stat_programs": 1024}


def _env_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@dataclass(frozen=True)
class Launch:
    """A kernel launch as `recording` keeps it instead of running it: the kernel's Python
    function, its grid, arguments and launch options (num_warps as CUDA gets them)."""
    fn: Callable
    grid: tuple
    args: tuple
    meta: dict


_RECORDING: list[Launch] | None = None


@contextlib.contextmanager
def recording():
    """Keep every kernel launch (a list of Launch) instead of running it, with the launch options
    and precision a CUDA device would get, so that bench/compile_kernels.py can compile what
    training launches for a GPU that is not there. Inside, any device counts as one the kernels
    run on and self-tests pass untried; the kernels' outputs are never written (only shapes and
    launch arguments mean anything). One recording at a time, in one thread."""
    global _RECORDING
    if triton is None:
        raise RuntimeError("recording kernel launches needs Triton (it ships with CUDA builds of torch)")
    if _RECORDING is not None:
        raise RuntimeError("kernel launches are already being recorded")
    _RECORDING = []
    try:
        yield _RECORDING
    finally:
        _RECORDING = None


def compiled(x: torch.Tensor) -> bool:
    """Whether launches on x's device are compiled for a GPU (CUDA, or a recording), not run by
    Triton's interpreter: launch options and the conv kernels' precision follow from it."""
    return x.is_cuda or _RECORDING is not None


def runs_on(x: torch.Tensor) -> bool:
    """Whether Triton kernels can run on x's device: compiled on CUDA, or on a CPU in Triton's
    interpreter (tests: TRITON_INTERPRET=1 set before Triton is imported); any device while
    launches are recorded."""
    if triton is None:
        return False
    if _RECORDING is not None:
        return True
    return x.is_cuda if not _env_interpret() else x.device.type == "cpu"


def available(x: torch.Tensor) -> bool:
    """Whether the fused kernels can run on x (runs_on) and passed their self-test on that device
    (see self_test)."""
    return runs_on(x) and self_test(str(x.device)) is None


def self_test(device: str, compare: Callable[[str], None] | None = None) -> str | None:
    """None when the kernels compile, run and match PyTorch's BN + ReLU [+ max-pool] on `device`
    (a few values, forward and backward); otherwise why not. Run once per device and comparison:
    a GPU Triton cannot compile for, or a machine without the C compiler Triton's launcher needs,
    then trains with PyTorch's kernels instead of failing in the middle of a run (the trainer says
    so: orchestrator.training.kernel_routes). compare: another kernel's comparison with its
    PyTorch route (models.kernels.warp's caller gives one), raising on a difference; default
    compare_with_pytorch. While launches are recorded nothing runs, so nothing is tested (and
    nothing is remembered)."""
    if _RECORDING is not None:
        return None
    return _self_test(device, compare or compare_with_pytorch)


@functools.lru_cache(maxsize=None)
def _self_test(device: str, compare: Callable[[str], None]) -> str | None:
    try:
        with torch.enable_grad(), torch.autocast(torch.device(device).type, enabled=False):
            compare(device)
        return None
    except Exception as exc:  # any failure means: do not use the kernels here
        return f"{type(exc).__name__}: {exc}".strip()[:500]


def compare_with_pytorch(device: str, kernel: Callable | None = None) -> None:
    """Raise unless `kernel` (bn_relu) matches F.batch_norm -> [max-pool ->] relu on a small input, given
    as one tensor and as the two parts of a split conv (2 groups of 2 x 4 channels), and updates
    running statistics as F.batch_norm does. 7 x 8 pixels: "same" pads the odd height on both
    sides and the even width after only."""
    kernel = kernel or bn_relu
    import torch.nn.functional as F
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(2, 16, 7, 8, generator=gen).to(device).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.rand(16, generator=gen).to(device) + 0.5, torch.randn(16, generator=gen).to(device)
    for pool in (None, (3, 2, 0), (3, 2, SAME)):
        for split in (False, True):
            ours, theirs = y.clone().requires_grad_(), y.clone().requires_grad_()
            stats = [torch.zeros(16, device=device), torch.ones(16, device=device)]
            ref_stats = [t.clone() for t in stats]
            running = Running(stats[0], stats[1], 0.1)
            if split:   # part j holds channel g * 8 + j * 4 + i as g * 4 + i
                halves = ours.view(2, 2, 2, 4, 7, 8)
                parts = [halves[:, :, j].reshape(2, 8, 7, 8) for j in (0, 1)]
                out = kernel(parts, weight, bias, 1e-3, pool, group_channels=4, running=running)[0]
            else:
                out = kernel(ours, weight, bias, 1e-3, pool, running=running)[0]
            ref = F.batch_norm(theirs, ref_stats[0], ref_stats[1], weight, bias, True, 0.1, 1e-3)
            ref = F.relu(MaxPool(*pool)(ref) if pool else ref)
            g = torch.randn(out.shape, generator=gen).to(device)
            out.backward(g)
            ref.backward(g)
            err = max(float((out - ref).detach().abs().max()), float((ours.grad - theirs.grad).abs().max()),
                      *(float((a - b).abs().max()) for a, b in zip(stats, ref_stats)))
            if not err < 1e-3:
                raise ArithmeticError(f"results differ from PyTorch's by {err:.3g}"
                                      + (" (split conv parts)" if split else ""))


if triton is not None:
    @triton.jit
    def _part_offsets(pix, cols, C, NP: tl.constexpr, CP: tl.constexpr):
        """Where (pixel, channel) of y lies: y is one (pixels, C) tensor (NP = 1), or NP parts of
        C / NP channels each, channel g * NP * CP + j * CP + i held by part j as g * CP + i (a
        widening conv computed as NP square ones, models.extractor.split_conv). Returns the
        [pixels, channels] offsets into a part, and each channel's part."""
        if NP == 1:
            off = pix.to(tl.int64)[:, None] * C + cols[None, :]
            part = cols * 0
        else:
            part = (cols // CP) % NP
            src = (cols // (NP * CP)) * CP + cols % CP
            off = pix.to(tl.int64)[:, None] * (C // NP) + src[None, :]
        return off, part

    @triton.jit
    def _load_y(Y0, Y1, pix, cols, m, C, NP: tl.constexpr, CP: tl.constexpr):
        """y at (pixel, channel) as float32, zero where m is False (see _part_offsets)."""
        off, part = _part_offsets(pix, cols, C, NP, CP)
        if NP == 1:
            v = tl.load(Y0 + off, mask=m, other=0.0).to(tl.float32)
        else:
            v = (tl.load(Y0 + off, mask=m & (part == 0)[None, :], other=0.0).to(tl.float32)
                 + tl.load(Y1 + off, mask=m & (part == 1)[None, :], other=0.0).to(tl.float32))
        return v

    @triton.jit
    def _store_y(Y0, Y1, pix, cols, m, C, v, NP: tl.constexpr, CP: tl.constexpr):
        """Write v to the layout _load_y reads."""
        off, part = _part_offsets(pix, cols, C, NP, CP)
        if NP == 1:
            tl.store(Y0 + off, v.to(Y0.dtype.element_ty), mask=m)
        else:
            tl.store(Y0 + off, v.to(Y0.dtype.element_ty), mask=m & (part == 0)[None, :])
            tl.store(Y1 + off, v.to(Y1.dtype.element_ty), mask=m & (part == 1)[None, :])

    def _stats(Y, Y1, SHIFT, PSUM, PSQ, R, C, rows_per_program,
               NP: tl.constexpr, CP: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        """Per-channel partial sums of (y - shift) and its square over one run of pixels."""
        pr = tl.program_id(0)
        pc = tl.program_id(1)
        cols = pc * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = cols < C
        shift = tl.load(SHIFT + cols, mask=cmask, other=0.0)
        acc = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.float32)
        acc2 = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.float32)
        r0 = pr * rows_per_program
        r1 = tl.minimum(r0 + rows_per_program, R)
        for start in range(r0, r1, BLOCK_R):
            rows = start + tl.arange(0, BLOCK_R)
            m = (rows < r1)[:, None] & cmask[None, :]
            v = _load_y(Y, Y1, rows, cols, m, C, NP, CP)
            v = tl.where(m, v - shift[None, :], 0.0)
            acc += v
            acc2 += v * v
        tl.store(PSUM + pr * C + cols, tl.sum(acc, axis=0), mask=cmask)
        tl.store(PSQ + pr * C + cols, tl.sum(acc2, axis=0), mask=cmask)

    def _apply_relu(Y, Y1, OUT, SCALE, BIAS, R, C,
                    NP: tl.constexpr, CP: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        """out = relu(y * scale + bias), channel-wise."""
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = cols < C
        m = (rows < R)[:, None] & cmask[None, :]
        off = rows.to(tl.int64)[:, None] * C + cols[None, :]
        scale = tl.load(SCALE + cols, mask=cmask, other=0.0)
        bias = tl.load(BIAS + cols, mask=cmask, other=0.0)
        v = _load_y(Y, Y1, rows, cols, m, C, NP, CP)
        z = tl.maximum(v * scale[None, :] + bias[None, :], 0.0)
        tl.store(OUT + off, z.to(OUT.dtype.element_ty), mask=m)

    def _apply_pool_relu(Y, Y1, OUT, CODE, SCALE, BIAS, P, C, H, W, HO, WO,
                         NP: tl.constexpr, CP: tl.constexpr, KS: tl.constexpr, ST: tl.constexpr,
                         PH: tl.constexpr, PW: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        """out = relu(max over the window of (y * scale + bias)); code = the maximum's offset in
        its window (kh * KS + kw, first maximum wins), or -1 where the ReLU zeroes the output.
        Window (oh, ow) starts at (oh * ST - PH, ow * ST - PW); cells outside the image never win,
        so any padding after the image (Keras' "same") is implied by HO, WO."""
        p = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = cols < C
        pmask = p < P
        ow = p % WO
        t = p // WO
        oh = t % HO
        b = t // HO
        scale = tl.load(SCALE + cols, mask=cmask, other=0.0)
        bias = tl.load(BIAS + cols, mask=cmask, other=0.0)
        best = tl.full([BLOCK_R, BLOCK_C], float("-inf"), tl.float32)
        arg = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.int32)
        for kh in tl.static_range(KS):
            h = oh * ST - PH + kh
            for kw in tl.static_range(KS):
                w = ow * ST - PW + kw
                ok = pmask & (h >= 0) & (h < H) & (w >= 0) & (w < W)
                m = ok[:, None] & cmask[None, :]
                v = _load_y(Y, Y1, (b * H + h) * W + w, cols, m, C, NP, CP)
                z = tl.where(m, v * scale[None, :] + bias[None, :], float("-inf"))
                better = z > best
                best = tl.where(better, z, best)
                arg = tl.where(better, kh * KS + kw, arg)
        m = pmask[:, None] & cmask[None, :]
        dst = p.to(tl.int64)[:, None] * C + cols[None, :]
        tl.store(OUT + dst, tl.maximum(best, 0.0).to(OUT.dtype.element_ty), mask=m)
        tl.store(CODE + dst, tl.where(best > 0.0, arg, -1).to(tl.int8), mask=m)

    def _backward(G, AUX, Y, Y1, DY, DY1, MEAN, SCALE, BIAS, K1, K2, K3, PSUM, PSUMX,
                  R, C, H, W, HO, WO, rows_per_program,
                  POOL: tl.constexpr, APPLY: tl.constexpr, NP: tl.constexpr, CP: tl.constexpr,
                  KS: tl.constexpr, ST: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,
                  NW: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        """dz = the gradient reaching the BN output (through ReLU and, with POOL, the max-pool);
        APPLY=False: per-channel partial sums of dz and dz * (y - mean);
        APPLY=True:  dy = k1 * dz - k2 - k3 * (y - mean).
        Without POOL, ReLU's mask is recomputed from y (y * scale + bias > 0, as in the forward)
        rather than read from its output; with POOL, AUX holds the pool's window codes. G and
        AUX are in the output's layout; y and dy in y's (one tensor or NP parts, _part_offsets)."""
        pr = tl.program_id(0)
        pc = tl.program_id(1)
        cols = pc * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = cols < C
        mean = tl.load(MEAN + cols, mask=cmask, other=0.0)
        if not POOL:
            scale = tl.load(SCALE + cols, mask=cmask, other=0.0)
            bias = tl.load(BIAS + cols, mask=cmask, other=0.0)
        if APPLY:
            k1 = tl.load(K1 + cols, mask=cmask, other=0.0)
            k2 = tl.load(K2 + cols, mask=cmask, other=0.0)
            k3 = tl.load(K3 + cols, mask=cmask, other=0.0)
        acc = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.float32)
        accx = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.float32)
        r0 = pr * rows_per_program
        r1 = tl.minimum(r0 + rows_per_program, R)
        for start in range(r0, r1, BLOCK_R):
            rows = start + tl.arange(0, BLOCK_R)
            rmask = rows < r1
            m = rmask[:, None] & cmask[None, :]
            off = rows.to(tl.int64)[:, None] * C + cols[None, :]
            if POOL:  # (the other case follows the load of y)
                # gather: a pixel receives the gradient of every window whose maximum it is
                w = rows % W
                t = rows // W
                h = t % H
                b = t // H
                # the NW windows back from the last one starting at or before the pixel; those
                # past HO / WO or ending before the pixel are masked
                oh_top = (h + PH) // ST
                ow_top = (w + PW) // ST
                dz = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.float32)
                for i in tl.static_range(NW):
                    oh = oh_top - i
                    kh = h + PH - oh * ST
                    okh = (oh >= 0) & (oh < HO) & (kh < KS)
                    for j in tl.static_range(NW):
                        ow = ow_top - j
                        kw = w + PW - ow * ST
                        ok = rmask & okh & (ow >= 0) & (ow < WO) & (kw < KS)
                        wm = ok[:, None] & cmask[None, :]
                        src = ((b * HO + oh) * WO + ow).to(tl.int64)[:, None] * C + cols[None, :]
                        code = tl.load(AUX + src, mask=wm, other=-1).to(tl.int32)
                        # loaded under the window's mask, not the per-channel hit: a mask that
                        # varies along the channels splits the load into 2-byte ones (16x the
                        # load instructions, bench/compile_kernels.py); the bytes are the same
                        g = tl.load(G + src, mask=wm, other=0.0).to(tl.float32)
                        dz += tl.where(code == (kh * KS + kw)[:, None], g, 0.0)
            y = _load_y(Y, Y1, rows, cols, m, C, NP, CP)
            if not POOL:
                g = tl.load(G + off, mask=m, other=0.0).to(tl.float32)
                dz = tl.where(y * scale[None, :] + bias[None, :] > 0.0, g, 0.0)
            xc = y - mean[None, :]
            if APPLY:
                dy = k1[None, :] * dz - k2[None, :] - k3[None, :] * xc
                _store_y(DY, DY1, rows, cols, m, C, dy, NP, CP)
            else:
                acc += tl.where(m, dz, 0.0)
                accx += tl.where(m, dz * xc, 0.0)
        if not APPLY:
            tl.store(PSUM + pr * C + cols, tl.sum(acc, axis=0), mask=cmask)
            tl.store(PSUMX + pr * C + cols, tl.sum(accx, axis=0), mask=cmask)

    @triton.jit
    def _combine(PA, PB, cols, cmask, parts, C, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """Column sums, in float64, of two (parts, C) float32 tables of per-program partial sums."""
        sa = tl.zeros([BLOCK_C], dtype=tl.float64)
        sb = tl.zeros([BLOCK_C], dtype=tl.float64)
        for p0 in range(0, parts, BLOCK_P):
            pr = p0 + tl.arange(0, BLOCK_P)
            m = (pr < parts)[:, None] & cmask[None, :]
            off = pr.to(tl.int64)[:, None] * C + cols[None, :]
            sa += tl.sum(tl.load(PA + off, mask=m, other=0.0).to(tl.float64), axis=0)
            sb += tl.sum(tl.load(PB + off, mask=m, other=0.0).to(tl.float64), axis=0)
        return sa, sb

    def _finalize_forward(PSUM, PSQ, SHIFT, WEIGHT, BIAS, MEAN, VAR, INVSTD, SCALE, SHIFT_B,
                          RMEAN, RVAR, RIDX, RSHIFT, parts, C, r, eps, keep, factor, unbias,
                          UPDATE: tl.constexpr, HAS_IDX: tl.constexpr, HAS_RSHIFT: tl.constexpr,
                          BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """Per channel, from the partial sums of (y - shift) and its square: the batch mean,
        biased variance, 1/sqrt(var + eps) and BN as y * scale + shift_b; with UPDATE, the running
        statistics too (at RIDX[c] when HAS_IDX; the mean plus RSHIFT when HAS_RSHIFT, the variance
        unbiased), as running * keep + batch * factor."""
        cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = cols < C
        s1, s2 = _combine(PSUM, PSQ, cols, cmask, parts, C, BLOCK_P, BLOCK_C)
        m1 = s1 / r
        var = tl.maximum(s2 / r - m1 * m1, 0.0)
        mean = (tl.load(SHIFT + cols, mask=cmask, other=0.0).to(tl.float64) + m1).to(tl.float32)
        var = var.to(tl.float32)
        invstd = 1.0 / tl.sqrt(var + eps)
        scale = tl.load(WEIGHT + cols, mask=cmask, other=0.0).to(tl.float32) * invstd
        shift_b = tl.load(BIAS + cols, mask=cmask, other=0.0).to(tl.float32) - mean * scale
        tl.store(MEAN + cols, mean, mask=cmask)
        tl.store(VAR + cols, var, mask=cmask)
        tl.store(INVSTD + cols, invstd, mask=cmask)
        tl.store(SCALE + cols, scale, mask=cmask)
        tl.store(SHIFT_B + cols, shift_b, mask=cmask)
        if UPDATE:
            if HAS_IDX:
                at = tl.load(RIDX + cols, mask=cmask, other=0)
            else:
                at = cols
            batch_mean = mean
            if HAS_RSHIFT:
                batch_mean = mean + tl.load(RSHIFT + cols, mask=cmask, other=0.0).to(tl.float32)
            batch_var = var * unbias
            rm = tl.load(RMEAN + at, mask=cmask, other=0.0)
            rv = tl.load(RVAR + at, mask=cmask, other=0.0)
            tl.store(RMEAN + at, rm * keep + batch_mean.to(rm.dtype) * factor, mask=cmask)
            tl.store(RVAR + at, rv * keep + batch_var.to(rv.dtype) * factor, mask=cmask)

    def _finalize_backward(PSUM, PSUMX, WEIGHT, INVSTD, K1, K2, K3, GW, GB, parts, C, r,
                           BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """From the partial sums of dz and dz * (y - mean): BN's weight and bias gradients and
        (k1, k2, k3) with dy = k1 * dz - k2 - k3 * (y - mean)."""
        cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = cols < C
        sdz, sdzx = _combine(PSUM, PSUMX, cols, cmask, parts, C, BLOCK_P, BLOCK_C)
        inv = tl.load(INVSTD + cols, mask=cmask, other=0.0).to(tl.float64)
        k1 = tl.load(WEIGHT + cols, mask=cmask, other=0.0).to(tl.float64) * inv
        tl.store(K1 + cols, k1.to(tl.float32), mask=cmask)
        tl.store(K2 + cols, (k1 * sdz / r).to(tl.float32), mask=cmask)
        tl.store(K3 + cols, (k1 * inv * inv * sdzx / r).to(tl.float32), mask=cmask)
        tl.store(GW + cols, (sdzx * inv).to(GW.dtype.element_ty), mask=cmask)
        tl.store(GB + cols, sdz.to(GB.dtype.element_ty), mask=cmask)

    _SOURCES = {"stats": _stats, "apply_relu": _apply_relu, "apply_pool_relu": _apply_pool_relu,
                "backward": _backward, "finalize_forward": _finalize_forward,
                "finalize_backward": _finalize_backward}


@functools.lru_cache(maxsize=None)
def _kernel(fn, device_type: str):
    """A kernel function, Triton-compiled for CUDA, interpreted by Triton on a CPU."""
    if device_type == "cpu" and not _env_interpret():
        raise RuntimeError("the fused BatchNorm kernels run on a CPU only in Triton's interpreter: "
                           "start Python with TRITON_INTERPRET=1 (tests do), or build the network with "
                           "ExecOptions(fuse='off')")
    return triton.jit(fn)


def _channel_block(c: int, least: int = 16) -> int:
    """TILES['channels'], or with TILES['divide'] the widest power-of-two tile up to it that
    divides c (no masked lanes), the full tile when none does; never below `least`."""
    block = max(TILES["channels"], least)
    if not TILES["divide"]:
        return block
    while block > max(16, least) and c % block:
        block //= 2
    return block if c % block == 0 else max(TILES["channels"], least)


_LAUNCH = threading.Lock()     # packs train in threads (orchestrator.execution.executors): one compile each


def launch(fn, x: torch.Tensor, grid, *args, **meta):
    """Run a kernel (a function of _SOURCES, or another module's) on the current CUDA stream, or
    in the interpreter; while recording (see `recording`), keep the launch instead."""
    source = _SOURCES[fn] if isinstance(fn, str) else fn
    if compiled(x):
        meta["num_warps"] = TILES["warps"]
    if _RECORDING is not None:
        _RECORDING.append(Launch(source, tuple(grid), args, dict(meta)))
        return
    kernel = _kernel(source, x.device.type)
    with _LAUNCH:
        kernel[grid](*args, **meta)


def split_rows(r: int, c: int, least_channels: int = 16) -> tuple[int, int, int, int]:
    """Tiles for a (r pixels, c channels) reduction: (rows per program, programs along the
    pixels, channel tile, channel tiles); about TILES['stat_programs'] programs in all."""
    br, bc = TILES["rows"], _channel_block(c, least_channels)
    cblocks = triton.cdiv(c, bc)
    per = max(br, triton.cdiv(triton.cdiv(r, max(1, TILES["stat_programs"] // cblocks)), br) * br)
    return per, triton.cdiv(r, per), bc, cblocks


@dataclass(frozen=True)
class Running:
    """A BN layer's running statistics, updated by the forward pass as nn.BatchNorm2d updates
    them: running * (1 - factor) + batch * factor, the variance unbiased. index: where each
    channel of y lives in the buffers (a pack computing some of its models), None for channel c
    at c; shift: a per-channel constant left out of y that the running mean must include (the
    conv bias in front of training-mode BN, which BN cancels)."""
    mean: torch.Tensor
    var: torch.Tensor
    factor: float
    index: torch.Tensor | None = None
    shift: torch.Tensor | None = None


_FINALIZE = {"parts": 64, "channels": 64}     # one program per 64 channels: tiny kernels


def finalize_forward(psum: torch.Tensor, psq: torch.Tensor, shift: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor, r: int, eps: float, running: Running | None = None):
    """Per-channel mean, biased variance, 1/sqrt(var + eps), and BN as y * scale + shift_b
    (float32), from per-program partial sums of (y - shift) and its square (combined in float64:
    the partials are float32); with `running`, its buffers are updated in the same kernel. One
    launch where PyTorch ops would take ~30 small ones per BN layer and step."""
    parts, c = psum.shape
    out = [torch.empty(c, dtype=torch.float32, device=psum.device) for _ in range(5)]
    rm = rv = ridx = rshift = out[0]        # placeholders where unused
    keep = factor = 0.0
    if running is not None:
        rm, rv, factor = running.mean, running.var, float(running.factor)
        keep = 1.0 - factor
        ridx = running.index if running.index is not None else ridx
        rshift = running.shift.detach() if running.shift is not None else rshift
    bc = _FINALIZE["channels"]
    launch("finalize_forward", psum, (triton.cdiv(c, bc),), psum, psq, shift, weight.detach(), bias.detach(),
           *out, rm, rv, ridx, rshift, parts, c, float(r), float(eps), keep, factor, r / max(r - 1, 1),
           UPDATE=running is not None, HAS_IDX=running is not None and running.index is not None,
           HAS_RSHIFT=running is not None and running.shift is not None,
           BLOCK_P=_FINALIZE["parts"], BLOCK_C=bc)
    return tuple(out)


def finalize_backward(psum: torch.Tensor, psumx: torch.Tensor, weight: torch.Tensor, invstd: torch.Tensor,
                      r: int):
    """From the partial sums of dz and dz * (y - mean): BN's weight and bias gradients (weight's
    dtype), and float32 (k1, k2, k3) with dy = k1 * dz - k2 - k3 * (y - mean)."""
    parts, c = psum.shape
    ks = [torch.empty(c, dtype=torch.float32, device=psum.device) for _ in range(3)]
    grad_weight, grad_bias = torch.empty_like(weight), torch.empty_like(weight)
    bc = _FINALIZE["channels"]
    launch("finalize_backward", psum, (triton.cdiv(c, bc),), psum, psumx, weight.detach(), invstd, *ks,
           grad_weight, grad_bias, parts, c, float(r), BLOCK_P=_FINALIZE["parts"], BLOCK_C=bc)
    return grad_weight, grad_bias, ks


class _FusedBN(torch.autograd.Function):
    """(weight, bias, y as 1 tensor or 2 parts) -> (out, batch mean, biased batch variance); see
    the module docstring and bn_relu."""

    @staticmethod
    def forward(ctx, weight, bias, eps: float, pool, cp: int, running, *parts):
        parts = tuple(p.contiguous(memory_format=torch.channels_last) for p in parts)
        n_parts = len(parts)
        b, cpart, h, w = parts[0].shape
        c = cpart * n_parts
        r = b * h * w
        if r < 2:
            raise ValueError(f"BatchNorm in training needs more than one value per channel, got input "
                             f"{tuple(parts[0].shape)}")
        y0, y1 = parts[0], parts[-1]
        layout = dict(NP=n_parts, CP=cp if n_parts > 1 else 1)
        # statistics: per-channel sums split over programs, shifted by each channel's first value
        # so that the sum of squares does not cancel
        per, parts_r, bc, cblocks = split_rows(r, c)
        br = TILES["rows"]
        firsts = [p[0, :, 0, 0].float() for p in parts]
        shift = (firsts[0] if n_parts == 1 else torch.stack([f.view(-1, cp) for f in firsts], 1).flatten()).contiguous()
        psum = y0.new_empty((parts_r, c), dtype=torch.float32)
        psq = torch.empty_like(psum)
        launch("stats", y0, (parts_r, cblocks), y0, y1, shift, psum, psq, r, c, per, BLOCK_R=br, BLOCK_C=bc,
               **layout)
        mean, var, invstd, scale, shift_b = finalize_forward(psum, psq, shift, weight, bias, r, eps, running)
        if pool is None:
            out = torch.empty((b, c, h, w), dtype=y0.dtype, device=y0.device, memory_format=torch.channels_last)
            launch("apply_relu", y0, (triton.cdiv(r, br), cblocks), y0, y1, out, scale, shift_b, r, c,
                   BLOCK_R=br, BLOCK_C=bc, **layout)
            aux = scale      # unused: the backward recomputes ReLU's mask from y
        else:
            ks, st, padding = pool
            (ph, _, ho), (pw, _, wo) = pool_geometry(h, ks, st, padding), pool_geometry(w, ks, st, padding)
            out = torch.empty((b, c, ho, wo), dtype=y0.dtype, device=y0.device, memory_format=torch.channels_last)
            aux = torch.empty((b, c, ho, wo), dtype=torch.int8, device=y0.device,
                              memory_format=torch.channels_last)
            p = b * ho * wo
            launch("apply_pool_relu", y0, (triton.cdiv(p, br), cblocks), y0, y1, out, aux, scale, shift_b,
                   p, c, h, w, ho, wo, KS=ks, ST=st, PH=ph, PW=pw, BLOCK_R=br, BLOCK_C=bc, **layout)
        ctx.save_for_backward(aux, weight, mean, invstd, scale, shift_b, *parts)
        ctx.pool = None if pool is None else (ks, st, ph, pw)
        ctx.cp, ctx.out_hw = cp, out.shape[2:]
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad_out, _grad_mean, _grad_var):
        aux, weight, mean, invstd, scale, shift_b, *parts = ctx.saved_tensors
        g = grad_out.contiguous(memory_format=torch.channels_last)
        n_parts = len(parts)
        b, cpart, h, w = parts[0].shape
        c = cpart * n_parts
        r = b * h * w
        per, parts_r, bc, cblocks = split_rows(r, c)
        if ctx.pool is None:
            ks, st, ph, pw, pool = 1, 1, 0, 0, False
        else:
            (ks, st, ph, pw), pool = ctx.pool, True
        ho, wo = ctx.out_hw      # the forward's, from pool_geometry
        meta = dict(POOL=pool, KS=ks, ST=st, PH=ph, PW=pw, NW=triton.cdiv(ks, st), BLOCK_R=TILES["rows"], BLOCK_C=bc,
                    NP=n_parts, CP=ctx.cp if n_parts > 1 else 1)
        y0, y1 = parts[0], parts[-1]
        psum = y0.new_empty((parts_r, c), dtype=torch.float32)
        psumx = torch.empty_like(psum)
        unused = psum
        launch("backward", y0, (parts_r, cblocks), g, aux, y0, y1, unused, unused, mean, scale, shift_b,
               unused, unused, unused, psum, psumx, r, c, h, w, ho, wo, per, APPLY=False, **meta)
        grad_weight, grad_bias, (k1, k2, k3) = finalize_backward(psum, psumx, weight, invstd, r)
        grads = [None] * n_parts
        if any(ctx.needs_input_grad[6:]):
            grads = [torch.empty_like(p) for p in parts]
            per_apply = TILES["rows_per_program"]
            launch("backward", y0, (triton.cdiv(r, per_apply), cblocks), g, aux, y0, y1, grads[0], grads[-1],
                   mean, scale, shift_b, k1, k2, k3, unused, unused, r, c, h, w, ho, wo, per_apply, APPLY=True,
                   **meta)
        return (grad_weight, grad_bias, None, None, None, None, *grads)


def bn_relu(y: torch.Tensor | Sequence[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor, eps: float,
            pool: tuple[int, int, int | str] | None = None, group_channels: int | None = None,
            running: Running | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """relu(batch_norm(y)) in training mode, max-pooled (kernel, stride, padding) when pool is given;
    padding an int or "same" (models.pooling, whose geometry the kernels follow).

    y: a (B, C, H, W) tensor, or the two halves of one as a widening grouped conv computed as
    square ones gives them (models.extractor.split_conv): part j holds channel g * 2c + j * c + i
    of y as its channel g * c + i, c = group_channels. The kernels read the parts where they lie
    (no interleaving copy) and send each its own gradient.
    running: the layer's running statistics, updated in place (see Running).
    Returns (output, batch mean, biased batch variance): the mean and variance are float32, in
    y's channel order, and carry no gradient. Output: y's dtype, channels-last.
    """
    parts = (y,) if isinstance(y, torch.Tensor) else tuple(y)
    if len(parts) not in (1, 2):
        raise ValueError(f"y must be a tensor or 2 parts of one, got {len(parts)} parts")
    if len(parts) == 2:
        if parts[0].shape != parts[1].shape or parts[0].dtype != parts[1].dtype:
            raise ValueError(f"the parts of y differ: {tuple(parts[0].shape)} {parts[0].dtype} and "
                             f"{tuple(parts[1].shape)} {parts[1].dtype}")
        if not group_channels or parts[0].shape[1] % group_channels:
            raise ValueError(f"group_channels ({group_channels}) must divide the parts' {parts[0].shape[1]} channels")
    if pool is not None:
        ks, st, padding = pool
        check_pool(ks, st, padding)
        ks, st, padding = int(ks), int(st), padding if padding == SAME else int(padding)
        if ks > 127:
            raise ValueError(f"pool kernel {ks} too large for the 1-byte window code")
        h, w = parts[0].shape[-2:]
        if min(pool_geometry(h, ks, st, padding)[2], pool_geometry(w, ks, st, padding)[2]) < 1:
            raise ValueError(f"a {h}x{w} map is too small for pooling (kernel {ks}, stride {st}, "
                             f"padding {padding!r})")
        pool = (ks, st, padding)
    return _FusedBN.apply(weight, bias, float(eps), pool, int(group_channels or 1), running, *parts)


__all__ = ["TILES", "Launch", "Running", "available", "bn_relu", "compare_with_pytorch", "compiled", "finalize_backward",
           "finalize_forward", "launch", "recording", "runs_on", "self_test"]
