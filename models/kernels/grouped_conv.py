"""A pack's square grouped convolutions ('same' padding, stride 1) as Triton kernels.

Why: the pack's convs are grouped by model with as many outputs as inputs per group (16 -> 16
channels in block 1, 32 -> 32 and 64 -> 64 in blocks 2 and 3, and the square halves of the
widening ones, models.extractor.split_conv), a shape cuDNN serves far below the device's memory
bandwidth (the profile is in BENCHMARKS.md). Each group's conv is a small matrix product per
kernel tap (pixels x C by C x C), so:

  forward:          out = sum over taps of x shifted by the tap @ W[tap]  (one tile of pixels
                    and one group per program, the groups of a tile side by side so that the
                    programs running together read whole cache lines of the channels-last rows);
  input gradient:   the same kernel on the output's gradient, with each group's weight
                    transposed and the taps mirrored;
  weight gradient:  per tap, x shifted^T @ gradient, summed over runs of pixels by programs
                    side by side (the taps of a run together, so x and the gradient come from
                    the cache after the first), the runs' partial sums added by one torch.sum.

No atomics: the results do not depend on scheduling. float32 accumulation; inputs as given
(bf16 under autocast; float32 products exact to float32 ("ieee") otherwise). The bias is not
taken: the extractor leaves it out in training (BN cancels it). Off by default
(`train.triton_conv`) until a GPU measures it (`bench/train_throughput.py`, variant
`packed-tconv`); on a CPU it runs in Triton's interpreter (tests only).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from partfer.models.kernels.fused_bn import compiled, launch, runs_on, self_test, triton

# A program's tile of pixels x channels (its float32 accumulator: 256 x 16 in block 1, 64 x 64 in
# block 3); about how many programs share a weight gradient; the widest groups taken (a 128 x 128
# float32 accumulator per weight-gradient program would not fit in registers; block 4's 128 -> 128
# conv per model, on 20 x 20 pixels, is cuDNN's best case anyway). Not tuned on a GPU yet.
CONV_TILES = {"tile": 4096, "wgrad_programs": 2048, "max_channels": 64}


def _rows(c: int) -> int:
    """Pixels per program for groups of c channels: a tile of CONV_TILES['tile'] values, at
    least 16 pixels (a matrix product's side)."""
    return max(16, CONV_TILES["tile"] // c)

if triton is not None:
    import triton.language as tl

    from partfer.models.kernels.fused_grey import _pixels

    def _conv(X, WT, OUT, R, C, H, W, NG, CG: tl.constexpr, KS: tl.constexpr, IEEE: tl.constexpr,
              UPCAST: tl.constexpr, BLOCK_R: tl.constexpr):
        """OUT[p, g*CG + o] = sum over taps t and inputs i of X[p + shift(t), g*CG + i] * WT[g, t, i, o]
        for a tile of BLOCK_R pixels p (channels-last rows of C channels) and one group g; zero
        outside the image."""
        pid = tl.program_id(0)
        g = pid % NG
        rows = (pid // NG) * BLOCK_R + tl.arange(0, BLOCK_R)
        rmask = rows < R
        b, h, w = _pixels(rows, H, W)
        ci = tl.arange(0, CG)
        cols = g * CG + ci
        acc = tl.zeros([BLOCK_R, CG], dtype=tl.float32)
        for tap in tl.static_range(KS * KS):
            hh = h + (tap // KS - KS // 2)
            ww = w + (tap % KS - KS // 2)
            ok = rmask & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
            src = ((b * H + hh) * W + ww).to(tl.int64)[:, None] * C + cols[None, :]
            xs = tl.load(X + src, mask=ok[:, None], other=0.0)
            wt = tl.load(WT + ((g * (KS * KS) + tap) * CG + ci[:, None]) * CG + ci[None, :])
            if UPCAST:
                xs, wt = xs.to(tl.float32), wt.to(tl.float32)
            if IEEE:
                acc += tl.dot(xs, wt, input_precision="ieee")
            else:
                acc += tl.dot(xs, wt)
        dst = rows.to(tl.int64)[:, None] * C + cols[None, :]
        tl.store(OUT + dst, acc.to(OUT.dtype.element_ty), mask=rmask[:, None])

    def _conv_wgrad(X, G, PW, R, C, H, W, NG, rows_per_program, CG: tl.constexpr, KS: tl.constexpr,
                    IEEE: tl.constexpr, UPCAST: tl.constexpr, BLOCK_R: tl.constexpr):
        """PW[run, g, t, i, o] = sum over the run's pixels p of X[p + shift(t), g*CG + i] * G[p, g*CG + o]."""
        pid = tl.program_id(0)
        taps = KS * KS
        tap = pid % taps
        g = (pid // taps) % NG
        run = pid // (taps * NG)
        dh = tap // KS - KS // 2
        dw = tap % KS - KS // 2
        ci = tl.arange(0, CG)
        cols = g * CG + ci
        acc = tl.zeros([CG, CG], dtype=tl.float32)
        r0 = run * rows_per_program
        r1 = tl.minimum(r0 + rows_per_program, R)
        for start in range(r0, r1, BLOCK_R):
            rows = start + tl.arange(0, BLOCK_R)
            rmask = rows < r1
            b, h, w = _pixels(rows, H, W)
            hh = h + dh
            ww = w + dw
            ok = rmask & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
            xs = tl.load(X + ((b * H + hh) * W + ww).to(tl.int64)[:, None] * C + cols[None, :],
                         mask=ok[:, None], other=0.0)
            gs = tl.load(G + rows.to(tl.int64)[:, None] * C + cols[None, :], mask=rmask[:, None], other=0.0)
            if UPCAST:
                xs, gs = xs.to(tl.float32), gs.to(tl.float32)
            if IEEE:
                acc += tl.dot(tl.trans(xs), gs, input_precision="ieee")
            else:
                acc += tl.dot(tl.trans(xs), gs)
        dst = (((run * NG + g) * taps + tap) * CG + ci[:, None]).to(tl.int64) * CG + ci[None, :]
        tl.store(PW + dst, acc)


def supported(x: torch.Tensor, weight: torch.Tensor, groups: int, conv: torch.nn.Conv2d) -> bool:
    """Whether the kernels take this conv: Triton runs on x's device and passed its self-test
    there; float32 or 16-bit floats; groups with C -> C channels, C a power of two from 16 (a
    matrix product's side) to CONV_TILES['max_channels']; an odd square kernel with 'same'
    padding, stride 1, no dilation."""
    c = weight.shape[1]
    k = weight.shape[-1]
    return (x.dim() == 4 and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and x.shape[1] == groups * c and weight.shape[0] == groups * c
            and 16 <= c <= CONV_TILES["max_channels"] and c & (c - 1) == 0 and weight.shape[-2] == k and k % 2 == 1
            and tuple(conv.stride) == (1, 1) and tuple(conv.dilation) == (1, 1)
            and tuple(conv.padding) == (k // 2, k // 2) and runs_on(x)
            and self_test(str(x.device), _compare_with_pytorch, "grouped conv") is None)


def _compare_with_pytorch(device: str) -> None:
    """Raise unless grouped_conv matches F.conv2d (output and both gradients) on a small input:
    in float32 for two kernel sizes, and under bf16 autocast (the training path on CUDA) to
    within bf16's rounding."""
    gen = torch.Generator().manual_seed(0)
    for k, dtype in ((3, None), (1, None), (3, torch.bfloat16)):
        x = torch.randn(2, 32, 5, 7, generator=gen).to(device).contiguous(memory_format=torch.channels_last)
        w = torch.randn(32, 16, k, k, generator=gen).to(device)
        xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
        xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
        with torch.autocast(torch.device(device).type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = grouped_conv(xs, ws, 2)
            ref = F.conv2d(xr, wr, None, 1, k // 2, 1, 2)
        g = torch.randn(out.shape, generator=gen).to(device, out.dtype)
        out.backward(g)
        ref.backward(g)
        tol = 1e-3 if dtype is None else 3e-2        # bf16: 8 bits of mantissa, relative to the scale
        for name, a, b in (("output", out, ref), ("input gradient", xs.grad, xr.grad),
                           ("weight gradient", ws.grad, wr.grad)):
            err = float((a.float() - b.float()).detach().abs().max())
            scale = 1.0 if dtype is None else float(b.float().detach().abs().max())
            if not err <= tol * scale:
                raise ArithmeticError(f"{name} differs from PyTorch's by {err:.3g} (kernel {k}, "
                                      f"{dtype or torch.float32})")


def _precision(x: torch.Tensor) -> dict:
    """How the kernels multiply: float32 inputs exactly ("ieee", not TF32); bf16 / fp16 ones on
    the tensor cores as they are, except in Triton's interpreter (a CPU), whose matrix product
    cannot take them: there they are widened to float32 first (exact, so the same products)."""
    interpreted = not compiled(x)
    return {"IEEE": x.dtype == torch.float32 or interpreted, "UPCAST": interpreted}


def _forward_weights(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """(G*C, C, k, k) -> [G, taps, C in, C out] for _conv."""
    c, k = weight.shape[1], weight.shape[-1]
    return weight.reshape(groups, c, c, k * k).permute(0, 3, 2, 1).contiguous()


def _input_grad_weights(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """The weights for which _conv of the output's gradient is the input's gradient: per group
    transposed (outputs become inputs), the taps mirrored (the shifts negated)."""
    c, k = weight.shape[1], weight.shape[-1]
    return weight.reshape(groups, c, c, k * k).flip(3).permute(0, 3, 1, 2).contiguous()


def _conv_launch(x: torch.Tensor, wt: torch.Tensor, groups: int, k: int) -> torch.Tensor:
    b, ch, h, w = x.shape
    out = torch.empty((b, ch, h, w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    r, br = b * h * w, _rows(ch // groups)
    launch(_conv, x, (groups * triton.cdiv(r, br),), x, wt, out, r, ch, h, w, groups,
           CG=ch // groups, KS=k, **_precision(x), BLOCK_R=br)
    return out


class _GroupedConv(torch.autograd.Function):
    """(x channels-last, weight) -> the grouped 'same' conv, no bias; see the module docstring."""

    @staticmethod
    def forward(ctx, x, weight, groups: int):
        x = x.contiguous(memory_format=torch.channels_last)
        k = weight.shape[-1]
        out = _conv_launch(x, _forward_weights(weight.to(x.dtype), groups), groups, k)
        ctx.save_for_backward(x, weight)
        ctx.groups = groups
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        groups = ctx.groups
        g = grad_out.to(x.dtype).contiguous(memory_format=torch.channels_last)
        b, ch, h, w = x.shape
        c, k = ch // groups, weight.shape[-1]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _conv_launch(g, _input_grad_weights(weight.to(x.dtype), groups), groups, k)
        if ctx.needs_input_grad[1]:
            r, br = b * h * w, _rows(c)
            taps = k * k
            runs = max(1, min(triton.cdiv(r, br), triton.cdiv(CONV_TILES["wgrad_programs"], groups * taps)))
            per = triton.cdiv(triton.cdiv(r, runs), br) * br
            runs = triton.cdiv(r, per)
            pw = x.new_empty((runs, groups, taps, c, c), dtype=torch.float32)
            launch(_conv_wgrad, x, (runs * groups * taps,), x, g, pw, r, ch, h, w, groups, per,
                   CG=c, KS=k, **_precision(x), BLOCK_R=br)
            # [G, taps, C in, C out] -> (G*C out, C in, k, k)
            grad_w = pw.sum(0).permute(0, 3, 2, 1).reshape(groups * c, c, k, k).to(weight.dtype)
        return grad_x, grad_w, None


def grouped_conv(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """F.conv2d(x, weight, None, stride 1, 'same' padding, groups) for square groups (see
    supported), computed by the Triton kernels; under autocast in autocast's dtype, as
    F.conv2d would be. Output channels-last."""
    kind = x.device.type
    if torch.is_autocast_enabled(kind):
        dtype = torch.get_autocast_dtype(kind)
        x, weight = x.to(dtype), weight.to(dtype)
    with torch.autocast(kind, enabled=False):
        return _GroupedConv.apply(x, weight, int(groups))


__all__ = ["CONV_TILES", "grouped_conv", "supported"]
