"""A pack's first convolution on grey images, fused with its BatchNorm and ReLU (Triton kernels).

Why: each model's first conv maps one grey channel (the paper's 3 identical copies, folded into
the weight) to 16 channels. cuDNN has no fast kernel for 1 -> 16 grouped convs, so the packed
network fed it 16 zero-padded input channels per model (models.extractor, grey_mode "pad"): at
160 px and 50 models a zero-filled 1.3 GB input, a conv and a weight gradient over it, and a
1.3 GB output read three more times by BN. Here the conv (9 multiply-adds per output) is
recomputed from the small grey input wherever its output is needed, and never stored:

  forward:  per-channel statistics of y (y computed on the fly), then relu(bn(y)), written once;
  backward: the sums of dz and dz * (y - mean) (ReLU's mask from the recomputed y), then dy,
            reduced at once into the conv weight's gradient (dy is not stored either).

The images get no gradient (they are data). The conv bias is left out, as in training-mode
models.extractor (BN cancels it); the caller adds it to the running mean. Same function as
conv2d(groups=M, 'same' zero padding) -> batch_norm (training) -> relu, computed in float32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from partfer.models.kernels.fused_bn import (TILES, Running, available, finalize_backward, finalize_forward, launch, self_test,
                             triton)

if triton is not None:
    import triton.language as tl

    @triton.jit
    def _im2col(X, b, h, w, rmask, m, sxb, sxm, sxh, sxw, H, W,
                KS: tl.constexpr, TAPS: tl.constexpr):
        """Model m's grey pixels under each row's kernel window: [BLOCK_R, TAPS] float32, tap
        t = dh * KS + dw, zero outside the image and for t >= KS * KS."""
        t = tl.arange(0, TAPS)
        hh = h[:, None] + (t // KS - KS // 2)[None, :]
        ww = w[:, None] + (t % KS - KS // 2)[None, :]
        ok = rmask[:, None] & (t < KS * KS)[None, :] & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
        src = b.to(tl.int64)[:, None] * sxb + m.to(tl.int64) * sxm + hh.to(tl.int64) * sxh + ww.to(tl.int64) * sxw
        return tl.load(X + src, mask=ok, other=0.0).to(tl.float32)

    @triton.jit
    def _weights(WT, m, KS: tl.constexpr, TAPS: tl.constexpr, CO: tl.constexpr):
        """Model m's folded conv weight as [TAPS, CO] (zero rows past KS * KS)."""
        t = tl.arange(0, TAPS)
        j = tl.arange(0, CO)
        return tl.load(WT + (m * CO + j)[None, :] * (KS * KS) + t[:, None],
                       mask=(t < KS * KS)[:, None], other=0.0)

    @triton.jit
    def _pixels(rows, H, W):
        """(image, row, column) of each flattened pixel index."""
        t = rows // W
        return t // H, t % H, rows % W

    def _grey_apply(X, WT, OUT, SCALE, BIAS, R, C, H, W, sxb, sxm, sxh, sxw,
                    KS: tl.constexpr, TAPS: tl.constexpr, CO: tl.constexpr, BLOCK_R: tl.constexpr):
        """out = relu(conv(x) * scale + bias) for model program_id(1), channels-last."""
        m = tl.program_id(1)
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        rmask = rows < R
        cols = m * CO + tl.arange(0, CO)
        b, h, w = _pixels(rows, H, W)
        y = tl.dot(_im2col(X, b, h, w, rmask, m, sxb, sxm, sxh, sxw, H, W, KS, TAPS),
                   _weights(WT, m, KS, TAPS, CO), input_precision="ieee")
        scale = tl.load(SCALE + cols)
        bias = tl.load(BIAS + cols)
        out = tl.maximum(y * scale[None, :] + bias[None, :], 0.0)
        tl.store(OUT + rows.to(tl.int64)[:, None] * C + cols[None, :], out.to(OUT.dtype.element_ty),
                 mask=rmask[:, None])

    def _grey_sums(X, WT, G, MEAN, SCALE, BIAS, K1, K2, K3, PSUM, PSUMX, PW,
                   R, C, H, W, sxb, sxm, sxh, sxw, rows_per_program,
                   MODE: tl.constexpr, KS: tl.constexpr, TAPS: tl.constexpr, CO: tl.constexpr,
                   BLOCK_R: tl.constexpr):
        """Per-program sums over a run of pixels for model program_id(1), y = im2col(x) @ w
        computed on the fly. MODE 0 (forward statistics): per-channel sums of y - shift and of
        its square, the shift in MEAN; MODE 1: of dz and dz * (y - mean); MODE 2: of the conv
        weight's gradient, im2col(x)^T @ dy with dy = k1 * dz - k2 - k3 * (y - mean), [TAPS, CO]."""
        pr = tl.program_id(0)
        m = tl.program_id(1)
        cols = m * CO + tl.arange(0, CO)
        wt = _weights(WT, m, KS, TAPS, CO)
        mean = tl.load(MEAN + cols)
        if MODE > 0:
            scale = tl.load(SCALE + cols)
            bias = tl.load(BIAS + cols)
        if MODE == 2:
            k1 = tl.load(K1 + cols)
            k2 = tl.load(K2 + cols)
            k3 = tl.load(K3 + cols)
            accw = tl.zeros([TAPS, CO], dtype=tl.float32)
        acc = tl.zeros([BLOCK_R, CO], dtype=tl.float32)
        accx = tl.zeros([BLOCK_R, CO], dtype=tl.float32)
        r0 = pr * rows_per_program
        r1 = tl.minimum(r0 + rows_per_program, R)
        for start in range(r0, r1, BLOCK_R):
            rows = start + tl.arange(0, BLOCK_R)
            rmask = rows < r1
            b, h, w = _pixels(rows, H, W)
            xcol = _im2col(X, b, h, w, rmask, m, sxb, sxm, sxh, sxw, H, W, KS, TAPS)
            y = tl.dot(xcol, wt, input_precision="ieee")
            xc = tl.where(rmask[:, None], y - mean[None, :], 0.0)
            if MODE == 0:
                acc += xc
                accx += xc * xc
            else:
                g = tl.load(G + rows.to(tl.int64)[:, None] * C + cols[None, :], mask=rmask[:, None],
                            other=0.0).to(tl.float32)
                dz = tl.where(rmask[:, None] & (y * scale[None, :] + bias[None, :] > 0.0), g, 0.0)
                if MODE == 1:
                    acc += dz
                    accx += dz * xc
                else:
                    dy = tl.where(rmask[:, None], k1[None, :] * dz - k2[None, :] - k3[None, :] * xc, 0.0)
                    accw += tl.dot(tl.trans(xcol), dy, input_precision="ieee")
        if MODE == 2:
            t = tl.arange(0, TAPS)
            tl.store(PW + (pr * C + cols).to(tl.int64)[None, :] * TAPS + t[:, None], accw)
        else:
            tl.store(PSUM + pr * C + cols, tl.sum(acc, axis=0))
            tl.store(PSUMX + pr * C + cols, tl.sum(accx, axis=0))


def supported(x: torch.Tensor, out_channels: int, kernel: int) -> bool:
    """Whether the fused kernels take this first conv: Triton on x's device, a power-of-two
    number of output channels per model from 16 to 128 (one model per program, a matrix
    product's side), an odd kernel."""
    return (available(x) and 16 <= out_channels <= 128 and out_channels & (out_channels - 1) == 0
            and kernel % 2 == 1 and self_test(str(x.device), _compare_with_pytorch, "fused grey conv") is None)


def _compare_with_pytorch(device: str) -> None:
    """Raise unless grey_conv_bn_relu matches conv2d -> batch_norm -> relu on a small input."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 2, 7, 7, generator=gen).to(device)
    wfold = torch.randn(32, 1, 3, 3, generator=gen).to(device)
    weight, bias = torch.rand(32, generator=gen).to(device) + 0.5, torch.randn(32, generator=gen).to(device)
    ours, theirs = wfold.clone().requires_grad_(), wfold.clone().requires_grad_()
    out = grey_conv_bn_relu(x, ours, weight, bias, 1e-3)[0]
    ref = F.relu(F.batch_norm(F.conv2d(x, theirs, padding=1, groups=2), None, None, weight, bias, True, 0.0, 1e-3))
    g = torch.randn(out.shape, generator=gen).to(device)
    out.backward(g)
    ref.backward(g)
    err = max(float((out - ref).detach().abs().max()), float((ours.grad - theirs.grad).abs().max()))
    if not err < 1e-2:
        raise ArithmeticError(f"results differ from PyTorch's by {err:.3g}")


def _taps(ks: int) -> int:
    return max(16, triton.next_power_of_2(ks * ks))


def _split(r: int, m: int) -> tuple[int, int]:
    """(rows per program, programs along the pixels) for one program per model and row run."""
    br = TILES["rows"]
    per = max(br, triton.cdiv(triton.cdiv(r, max(1, TILES["stat_programs"] // m)), br) * br)
    return per, triton.cdiv(r, per)


class _FusedGreyConvBN(torch.autograd.Function):
    """(x, folded conv weight, BN weight, BN bias) -> (out, batch mean, biased batch variance)."""

    @staticmethod
    def forward(ctx, x, wfold, weight, bias, eps: float, out_dtype, running):
        b, m, h, w = x.shape
        c, ks = wfold.shape[0], wfold.shape[-1]
        co = c // m
        r = b * h * w
        if r < 2:
            raise ValueError(f"BatchNorm in training needs more than one value per channel, got input {tuple(x.shape)}")
        wt = wfold.reshape(c, ks * ks).float().contiguous()
        per, parts = _split(r, m)
        meta = dict(KS=ks, TAPS=_taps(ks), CO=co, BLOCK_R=TILES["rows"])
        strides = x.stride()
        # each channel's output at the first pixel: the shift that keeps the sum of squares exact
        p = ks // 2
        with torch.autocast(x.device.type, enabled=False):
            shift = F.conv2d(x[:1, :, : p + 1, : p + 1].float(), wt.view(c, 1, ks, ks), padding=p,
                             groups=m)[0, :, 0, 0].float().contiguous()
        psum = x.new_empty((parts, c), dtype=torch.float32)
        psq = torch.empty_like(psum)
        unused = psum
        launch(_grey_sums, x, (parts, m), x, wt, unused, shift, unused, unused, unused, unused, unused,
               psum, psq, unused, r, c, h, w, *strides, per, MODE=0, **meta)
        mean, var, invstd, scale, shift_b = finalize_forward(psum, psq, shift, weight, bias, r, eps, running)
        out = torch.empty((b, c, h, w), dtype=out_dtype, device=x.device, memory_format=torch.channels_last)
        launch(_grey_apply, x, (triton.cdiv(r, TILES["rows"]), m), x, wt, out, scale, shift_b,
               r, c, h, w, *strides, **meta)
        ctx.save_for_backward(x, wt, weight, mean, invstd, scale, shift_b)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad_out, _grad_mean, _grad_var):
        x, wt, weight, mean, invstd, scale, shift_b = ctx.saved_tensors
        g = grad_out.contiguous(memory_format=torch.channels_last)
        b, m, h, w = x.shape
        c, taps2 = wt.shape
        ks = int(round(taps2 ** 0.5))
        co = c // m
        r = b * h * w
        per, parts = _split(r, m)
        taps = _taps(ks)
        meta = dict(KS=ks, TAPS=taps, CO=co, BLOCK_R=TILES["rows"])
        strides = x.stride()
        psum = x.new_empty((parts, c), dtype=torch.float32)
        psumx = torch.empty_like(psum)
        unused = psum
        launch(_grey_sums, x, (parts, m), x, wt, g, mean, scale, shift_b, unused, unused, unused,
               psum, psumx, unused, r, c, h, w, *strides, per, MODE=1, **meta)
        grad_weight, grad_bias, (k1, k2, k3) = finalize_backward(psum, psumx, weight, invstd, r)
        grad_wfold = None
        if ctx.needs_input_grad[1]:
            pw = x.new_empty((parts, c, taps), dtype=torch.float32)
            launch(_grey_sums, x, (parts, m), x, wt, g, mean, scale, shift_b, k1, k2, k3,
                   unused, unused, pw, r, c, h, w, *strides, per, MODE=2, **meta)
            grad_wfold = pw.sum(0)[:, :taps2].reshape(c, 1, ks, ks)
        return None, grad_wfold, grad_weight, grad_bias, None, None, None


def grey_conv_bn_relu(x: torch.Tensor, wfold: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      eps: float, out_dtype: torch.dtype | None = None, running: Running | None = None):
    """relu(batch_norm(conv2d(x, wfold, groups=M, 'same' padding))) in training mode.

    x: (B, M, H, W) grey images, one channel per model, any layout; no gradient flows to it.
    wfold: (M * CO, 1, k, k), each model's first-conv weight summed over its input channels.
    running: the BN's running statistics, updated in place (models.kernels.fused_bn.Running).
    Returns (output (B, M * CO, H, W) channels-last in out_dtype (default x's), batch mean,
    biased batch variance).
    """
    if x.requires_grad:
        raise ValueError("the fused first conv gives its input no gradient; x must not require one")
    if wfold.dim() != 4 or wfold.shape[1] != 1 or wfold.shape[0] % x.shape[1]:
        raise ValueError(f"expected a (M*CO, 1, k, k) folded weight for {x.shape[1]} models, got {tuple(wfold.shape)}")
    return _FusedGreyConvBN.apply(x, wfold, weight, bias, float(eps), out_dtype or x.dtype, running)


__all__ = ["grey_conv_bn_relu", "supported"]
