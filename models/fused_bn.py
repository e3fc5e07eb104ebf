"""Training-mode BatchNorm fused with its ReLU (and the block's max-pool), as Triton kernels.

Why: on an H200 a 50-model pack spent over half of its training step in PyTorch's BatchNorm,
ReLU and max-pool kernels (BENCHMARKS.md, session 3's profile: BN 28 %, max-pool 24 %), each a
separate pass over activations of 1.3 GB at 160 px, and max-pool kept int64 indices. Here:

  forward:  1 pass for the per-channel statistics, 1 pass that normalises, applies ReLU and (in
            the pooled blocks) max-pools, writing only the pooled output and a 1-byte in-window
            offset of each maximum (-1 where ReLU zeroes it);
  backward: 2 passes (per-channel sums of dz and dz * x-centred, then dy), each finding dz from
            the pooled gradient by gathering over the <= 4 windows that cover a pixel.

Same function as conv -> nn.BatchNorm2d (training mode) -> ReLU [-> nn.MaxPool2d], in the order
the extractor runs them (ReLU after the pool commutes with it): the first maximum in a window wins
ties, as in PyTorch; statistics and all arithmetic are float32 whatever the activation dtype.
Activations are channels-last, seen as a (pixels, channels) matrix. NaNs are not propagated
through the pool (a diverged run is caught by its loss).

The kernels are compiled by Triton on CUDA; on a CPU they run in Triton's interpreter (slow, for
tests only). `available(x)` says whether the fused path can take a tensor.
"""
from __future__ import annotations

import functools
import os
import threading

import torch

try:  # Triton ships with CUDA builds of torch; without it the extractor keeps PyTorch's kernels
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

# Tile sizes (pixels x channels) and warps, measured on an H200 (bench/train_throughput.py --tiles).
TILES = {"rows": 64, "channels": 32, "divide": True, "warps": 4, "rows_per_program": 256, "stat_programs": 1024}


def _env_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available(x: torch.Tensor) -> bool:
    """Whether the fused kernels can run on x: compiled on CUDA, or on a CPU in Triton's
    interpreter (tests: TRITON_INTERPRET=1 set before Triton is imported), and they passed their
    self-test on that device (see self_test)."""
    if triton is None:
        return False
    if not (x.is_cuda if not _env_interpret() else x.device.type == "cpu"):
        return False
    return self_test(str(x.device)) is None


@functools.lru_cache(maxsize=None)
def self_test(device: str, compare=None, name: str = "fused BatchNorm") -> str | None:
    """None when the kernels compile, run and match PyTorch's BN + ReLU [+ max-pool] on `device`
    (a few values, forward and backward); otherwise why not, warned once. A GPU Triton cannot
    compile for, or a machine without the C compiler Triton's launcher needs, then trains with
    PyTorch's kernels instead of failing in the middle of a run. compare / name: another module's
    check (models.fused_grey's) and what to call its kernels; default this module's."""
    import warnings
    try:
        with torch.enable_grad(), torch.autocast(torch.device(device).type, enabled=False):
            (compare or _compare_with_pytorch)(device)
        return None
    except Exception as exc:  # any failure means: do not use the kernels here
        reason = f"{type(exc).__name__}: {exc}".strip()[:500]
        warnings.warn(f"{name} kernels unavailable on {device} ({reason}); "
                      "training with PyTorch's kernels", RuntimeWarning, stacklevel=2)
        return reason


def _compare_with_pytorch(device: str) -> None:
    """Raise unless bn_relu matches F.batch_norm -> [max_pool2d ->] relu on a small input."""
    import torch.nn.functional as F
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(2, 16, 7, 7, generator=gen).to(device).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.rand(16, generator=gen).to(device) + 0.5, torch.randn(16, generator=gen).to(device)
    for pool in (None, (3, 2, 0)):
        ours, theirs = y.clone().requires_grad_(), y.clone().requires_grad_()
        out = bn_relu(ours, weight, bias, 1e-3, pool)[0]
        ref = F.batch_norm(theirs, None, None, weight, bias, True, 0.0, 1e-3)
        ref = F.relu(F.max_pool2d(ref, *pool) if pool else ref)
        g = torch.randn(out.shape, generator=gen).to(device)
        out.backward(g)
        ref.backward(g)
        err = max(float((out - ref).detach().abs().max()), float((ours.grad - theirs.grad).abs().max()))
        if not err < 1e-3:
            raise ArithmeticError(f"results differ from PyTorch's by {err:.3g}")


if triton is not None:
    def _stats(Y, SHIFT, PSUM, PSQ, R, C, rows_per_program,
               BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
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
            v = tl.load(Y + rows.to(tl.int64)[:, None] * C + cols[None, :], mask=m, other=0.0).to(tl.float32)
            v = tl.where(m, v - shift[None, :], 0.0)
            acc += v
            acc2 += v * v
        tl.store(PSUM + pr * C + cols, tl.sum(acc, axis=0), mask=cmask)
        tl.store(PSQ + pr * C + cols, tl.sum(acc2, axis=0), mask=cmask)

    def _apply_relu(Y, OUT, SCALE, BIAS, R, C, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        """out = relu(y * scale + bias), channel-wise."""
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = cols < C
        m = (rows < R)[:, None] & cmask[None, :]
        off = rows.to(tl.int64)[:, None] * C + cols[None, :]
        scale = tl.load(SCALE + cols, mask=cmask, other=0.0)
        bias = tl.load(BIAS + cols, mask=cmask, other=0.0)
        v = tl.load(Y + off, mask=m, other=0.0).to(tl.float32)
        z = tl.maximum(v * scale[None, :] + bias[None, :], 0.0)
        tl.store(OUT + off, z.to(OUT.dtype.element_ty), mask=m)

    def _apply_pool_relu(Y, OUT, CODE, SCALE, BIAS, P, C, H, W, HO, WO,
                         KS: tl.constexpr, ST: tl.constexpr, PD: tl.constexpr,
                         BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        """out = relu(max over the window of (y * scale + bias)); code = the maximum's offset in
        its window (kh * KS + kw, first maximum wins), or -1 where the ReLU zeroes the output."""
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
            h = oh * ST - PD + kh
            for kw in tl.static_range(KS):
                w = ow * ST - PD + kw
                ok = pmask & (h >= 0) & (h < H) & (w >= 0) & (w < W)
                m = ok[:, None] & cmask[None, :]
                src = ((b * H + h) * W + w).to(tl.int64) * C
                v = tl.load(Y + src[:, None] + cols[None, :], mask=m, other=0.0).to(tl.float32)
                z = tl.where(m, v * scale[None, :] + bias[None, :], float("-inf"))
                better = z > best
                best = tl.where(better, z, best)
                arg = tl.where(better, kh * KS + kw, arg)
        m = pmask[:, None] & cmask[None, :]
        dst = p.to(tl.int64)[:, None] * C + cols[None, :]
        tl.store(OUT + dst, tl.maximum(best, 0.0).to(OUT.dtype.element_ty), mask=m)
        tl.store(CODE + dst, tl.where(best > 0.0, arg, -1).to(tl.int8), mask=m)

    def _backward(G, AUX, Y, DY, MEAN, SCALE, BIAS, K1, K2, K3, PSUM, PSUMX,
                  R, C, H, W, HO, WO, rows_per_program,
                  POOL: tl.constexpr, APPLY: tl.constexpr, KS: tl.constexpr, ST: tl.constexpr,
                  PD: tl.constexpr, NW: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        """dz = the gradient reaching the BN output (through ReLU and, with POOL, the max-pool);
        APPLY=False: per-channel partial sums of dz and dz * (y - mean);
        APPLY=True:  dy = k1 * dz - k2 - k3 * (y - mean).
        Without POOL, ReLU's mask is recomputed from y (y * scale + bias > 0, as in the forward)
        rather than read from its output; with POOL, AUX holds the pool's window codes."""
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
                oh_top = (h + PD) // ST
                ow_top = (w + PD) // ST
                dz = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.float32)
                for i in tl.static_range(NW):
                    oh = oh_top - i
                    kh = h + PD - oh * ST
                    okh = (oh >= 0) & (oh < HO) & (kh < KS)
                    for j in tl.static_range(NW):
                        ow = ow_top - j
                        kw = w + PD - ow * ST
                        ok = rmask & okh & (ow >= 0) & (ow < WO) & (kw < KS)
                        wm = ok[:, None] & cmask[None, :]
                        src = ((b * HO + oh) * WO + ow).to(tl.int64)[:, None] * C + cols[None, :]
                        code = tl.load(AUX + src, mask=wm, other=-1).to(tl.int32)
                        hit = wm & (code == (kh * KS + kw)[:, None])
                        g = tl.load(G + src, mask=hit, other=0.0).to(tl.float32)
                        dz += g
            y = tl.load(Y + off, mask=m, other=0.0).to(tl.float32)
            if not POOL:
                g = tl.load(G + off, mask=m, other=0.0).to(tl.float32)
                dz = tl.where(y * scale[None, :] + bias[None, :] > 0.0, g, 0.0)
            xc = y - mean[None, :]
            if APPLY:
                dy = k1[None, :] * dz - k2[None, :] - k3[None, :] * xc
                tl.store(DY + off, dy.to(DY.dtype.element_ty), mask=m)
            else:
                acc += tl.where(m, dz, 0.0)
                accx += tl.where(m, dz * xc, 0.0)
        if not APPLY:
            tl.store(PSUM + pr * C + cols, tl.sum(acc, axis=0), mask=cmask)
            tl.store(PSUMX + pr * C + cols, tl.sum(accx, axis=0), mask=cmask)

    _SOURCES = {"stats": _stats, "apply_relu": _apply_relu, "apply_pool_relu": _apply_pool_relu,
                "backward": _backward}


@functools.lru_cache(maxsize=None)
def _kernel(fn, device_type: str):
    """A kernel function, Triton-compiled for CUDA, interpreted by Triton on a CPU."""
    if device_type == "cpu" and not _env_interpret():
        raise RuntimeError("the fused BatchNorm kernels run on a CPU only in Triton's interpreter: "
                           "start Python with TRITON_INTERPRET=1 (tests do), or use fuse_mode 'off'")
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


_LAUNCH = threading.Lock()     # packs train in threads (orchestrator.executors): one compile each


def _launch(fn, x: torch.Tensor, grid, *args, **meta):
    """Run a kernel (a function of _SOURCES, or another module's) on the current CUDA stream, or
    in the interpreter."""
    kernel = _kernel(_SOURCES[fn] if isinstance(fn, str) else fn, x.device.type)
    if x.device.type == "cuda":
        meta["num_warps"] = TILES["warps"]
    with _LAUNCH:
        kernel[grid](*args, **meta)


def split_rows(r: int, c: int, least_channels: int = 16) -> tuple[int, int, int, int]:
    """Tiles for a (r pixels, c channels) reduction: (rows per program, programs along the
    pixels, channel tile, channel tiles); about TILES['stat_programs'] programs in all."""
    br, bc = TILES["rows"], _channel_block(c, least_channels)
    cblocks = triton.cdiv(c, bc)
    per = max(br, triton.cdiv(triton.cdiv(r, max(1, TILES["stat_programs"] // cblocks)), br) * br)
    return per, triton.cdiv(r, per), bc, cblocks


def moments(psum: torch.Tensor, psq: torch.Tensor, shift: torch.Tensor, r: int, eps: float):
    """Per-channel mean, biased variance and 1/sqrt(var + eps) from per-program partial sums of
    (y - shift) and its square (combined in float64: the partials are float32)."""
    m1 = psum.double().sum(0) / r
    var = (psq.double().sum(0) / r - m1 * m1).clamp_min(0.0)
    mean = (shift.double() + m1).float()
    var = var.float()
    return mean, var, torch.rsqrt(var + eps)


def affine(weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor):
    """BN as y * scale + shift, per channel (float32, contiguous: kernel arguments)."""
    scale = (weight.float() * invstd).contiguous()
    return scale, (bias.float() - mean * scale).contiguous()


def backward_coefficients(psum: torch.Tensor, psumx: torch.Tensor, weight: torch.Tensor,
                          invstd: torch.Tensor, r: int):
    """From the partial sums of dz and dz * (y - mean): BN's weight and bias gradients, and
    (k1, k2, k3) with dy = k1 * dz - k2 - k3 * (y - mean)."""
    sdz, sdzx = psum.double().sum(0), psumx.double().sum(0)
    inv = invstd.double()
    k1 = weight.double() * inv
    ks = [k.float().contiguous() for k in (k1, k1 * sdz / r, k1 * inv * inv * sdzx / r)]
    return (sdzx * inv).to(weight.dtype), sdz.to(weight.dtype), ks


class _FusedBN(torch.autograd.Function):
    """(y, weight, bias) -> (out, batch mean, biased batch variance); see the module docstring."""

    @staticmethod
    def forward(ctx, y, weight, bias, eps: float, pool):
        y = y.contiguous(memory_format=torch.channels_last)
        b, c, h, w = y.shape
        r = b * h * w
        if r < 2:
            raise ValueError(f"BatchNorm in training needs more than one value per channel, got input {tuple(y.shape)}")
        # statistics: per-channel sums split over programs, shifted by each channel's first value
        # so that the sum of squares does not cancel
        per, parts, bc, cblocks = split_rows(r, c)
        br = TILES["rows"]
        shift = y[0, :, 0, 0].float().contiguous()
        psum = y.new_empty((parts, c), dtype=torch.float32)
        psq = torch.empty_like(psum)
        _launch("stats", y, (parts, cblocks), y, shift, psum, psq, r, c, per, BLOCK_R=br, BLOCK_C=bc)
        mean, var, invstd = moments(psum, psq, shift, r, eps)
        scale, shift_b = affine(weight, bias, mean, invstd)
        if pool is None:
            out = torch.empty_like(y)
            _launch("apply_relu", y, (triton.cdiv(r, br), cblocks), y, out, scale, shift_b, r, c,
                    BLOCK_R=br, BLOCK_C=bc)
            aux = scale      # unused: the backward recomputes ReLU's mask from y
        else:
            ks, st, pd = pool
            ho, wo = (h + 2 * pd - ks) // st + 1, (w + 2 * pd - ks) // st + 1
            out = torch.empty((b, c, ho, wo), dtype=y.dtype, device=y.device, memory_format=torch.channels_last)
            aux = torch.empty((b, c, ho, wo), dtype=torch.int8, device=y.device,
                              memory_format=torch.channels_last)
            p = b * ho * wo
            _launch("apply_pool_relu", y, (triton.cdiv(p, br), cblocks), y, out, aux, scale, shift_b,
                    p, c, h, w, ho, wo, KS=ks, ST=st, PD=pd, BLOCK_R=br, BLOCK_C=bc)
        ctx.save_for_backward(y, aux, weight, mean, invstd, scale, shift_b)
        ctx.pool = pool
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad_out, _grad_mean, _grad_var):
        y, aux, weight, mean, invstd, scale, shift_b = ctx.saved_tensors
        g = grad_out.contiguous(memory_format=torch.channels_last)
        b, c, h, w = y.shape
        r = b * h * w
        per, parts, bc, cblocks = split_rows(r, c)
        if ctx.pool is None:
            ks, st, pd, ho, wo, pool = 1, 1, 0, h, w, False
        else:
            ks, st, pd = ctx.pool
            ho, wo, pool = aux.shape[2], aux.shape[3], True
        meta = dict(POOL=pool, KS=ks, ST=st, PD=pd, NW=triton.cdiv(ks, st), BLOCK_R=TILES["rows"], BLOCK_C=bc)
        psum = y.new_empty((parts, c), dtype=torch.float32)
        psumx = torch.empty_like(psum)
        unused = psum
        _launch("backward", y, (parts, cblocks), g, aux, y, unused, mean, scale, shift_b, unused, unused, unused,
                psum, psumx, r, c, h, w, ho, wo, per, APPLY=False, **meta)
        grad_weight, grad_bias, (k1, k2, k3) = backward_coefficients(psum, psumx, weight, invstd, r)
        grad_y = None
        if ctx.needs_input_grad[0]:
            grad_y = torch.empty_like(y)
            per_apply = TILES["rows_per_program"]
            _launch("backward", y, (triton.cdiv(r, per_apply), cblocks), g, aux, y, grad_y, mean, scale, shift_b,
                    k1, k2, k3, unused, unused, r, c, h, w, ho, wo, per_apply, APPLY=True, **meta)
        return grad_y, grad_weight, grad_bias, None, None


def bn_relu(y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
            pool: tuple[int, int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """relu(batch_norm(y)) in training mode, max-pooled (kernel, stride, padding) when pool is given.

    Returns (output, batch mean, biased batch variance): the caller updates running statistics
    (the mean and variance are float32 and carry no gradient). Output: y's dtype, channels-last.
    """
    if pool is not None:
        ks, st, pd = pool
        if not (ks >= 1 and st >= 1 and 0 <= pd <= ks // 2):
            raise ValueError(f"bad pooling (kernel {ks}, stride {st}, padding {pd})")
        if ks > 127:
            raise ValueError(f"pool kernel {ks} too large for the 1-byte window code")
    return _FusedBN.apply(y, weight, bias, float(eps), None if pool is None else tuple(int(v) for v in pool))


__all__ = ["TILES", "available", "bn_relu"]
