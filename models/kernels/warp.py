"""A training batch gathered, warped and normalised in one Triton kernel, straight from the uint8
images on the GPU into the packed network's input layout.

Why: PyTorch's route (orchestrator.training.augment) passes over the batch five times (gather,
convert to float, build a sampling grid, grid_sample, copy into the network's layout); here each
output pixel reads its four source pixels, interpolates, normalises and is written once, in the
dtype the network computes in (the measured gain is in BENCHMARKS.md).

The function is grid_sample's (bilinear, border padding, align_corners=False) under per-sample
sampling maps, with the pixels normalised as augment.normalise_pixels does, in float32, rounded
once to the output dtype. The caller gives the sampling maps; the landmarks are moved elsewhere.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from partfer.models.kernels.fused_bn import launch, runs_on, self_test, triton

# Output pixels x models per program: rows of the channels-last output are models, so a tile
# writes BLOCK_M contiguous values per pixel.
TILES = {"pixels": 128, "models": 16}

if triton is not None:
    import triton.language as tl

    def _warp(IMG, IDX, THETA, OUT, M, B, H, W, so_b, so_m, so_p,
              BLOCK_P: tl.constexpr, BLOCK_M: tl.constexpr):
        """OUT[b, m, p] = bilinear sample of image IDX[m, b] at output pixel p under THETA[m * B + b],
        normalised to [-1, 1]; one program per (pixel run, model run, batch index)."""
        p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
        b = tl.program_id(2)
        pmask = p < H * W
        mmask = m < M
        n = m * B + b                                   # the sample's row in IDX and THETA
        row = tl.load(IDX + n, mask=mmask, other=0).to(tl.int64)
        t0 = tl.load(THETA + n * 6 + 0, mask=mmask, other=0.0)[None, :]
        t1 = tl.load(THETA + n * 6 + 1, mask=mmask, other=0.0)[None, :]
        t2 = tl.load(THETA + n * 6 + 2, mask=mmask, other=0.0)[None, :]
        t3 = tl.load(THETA + n * 6 + 3, mask=mmask, other=0.0)[None, :]
        t4 = tl.load(THETA + n * 6 + 4, mask=mmask, other=0.0)[None, :]
        t5 = tl.load(THETA + n * 6 + 5, mask=mmask, other=0.0)[None, :]
        wf = W * 1.0                # (an int argument equal to 1 arrives as a constant)
        hf = H * 1.0
        # the output pixel's centre in [-1, 1] (affine_grid, align_corners=False)
        xn = ((p % W) * 2 + 1).to(tl.float32)[:, None] / wf - 1.0
        yn = ((p // W) * 2 + 1).to(tl.float32)[:, None] / hf - 1.0
        sx = t0 * xn + (t1 * yn + t2)
        sy = t3 * xn + (t4 * yn + t5)
        # to pixel coordinates, clipped to the image (padding_mode="border")
        ix = tl.minimum(tl.maximum(((sx + 1.0) * wf - 1.0) / 2.0, 0.0), wf - 1.0)
        iy = tl.minimum(tl.maximum(((sy + 1.0) * hf - 1.0) / 2.0, 0.0), hf - 1.0)
        x0f = tl.floor(ix)
        y0f = tl.floor(iy)
        x0 = x0f.to(tl.int32)
        y0 = y0f.to(tl.int32)
        # a corner past the last pixel has weight 0: read the last pixel in its place
        x1 = tl.minimum(x0 + 1, W - 1)
        y1 = tl.minimum(y0 + 1, H - 1)
        ex = ix - x0f
        ey = iy - y0f
        fx = (x0f + 1.0) - ix
        fy = (y0f + 1.0) - iy
        mask = pmask[:, None] & mmask[None, :]
        base = IMG + row[None, :] * (H * W)
        scale = 2.0 / 255.0
        v00 = tl.load(base + y0 * W + x0, mask=mask, other=0).to(tl.float32) * scale - 1.0
        v01 = tl.load(base + y0 * W + x1, mask=mask, other=0).to(tl.float32) * scale - 1.0
        v10 = tl.load(base + y1 * W + x0, mask=mask, other=0).to(tl.float32) * scale - 1.0
        v11 = tl.load(base + y1 * W + x1, mask=mask, other=0).to(tl.float32) * scale - 1.0
        out = v00 * (fx * fy) + v01 * (ex * fy) + v10 * (fx * ey) + v11 * (ex * ey)
        dst = b.to(tl.int64) * so_b + m.to(tl.int64)[None, :] * so_m + p.to(tl.int64)[:, None] * so_p
        tl.store(OUT + dst, out.to(OUT.dtype.element_ty), mask=mask)


def available(images: torch.Tensor, check: Callable[[str], None]) -> bool:
    """Whether the kernel runs on the images' device (Triton compiled on CUDA, or its interpreter
    on a CPU) and passed `check` there once (a comparison with the caller's reference route,
    raising on a difference)."""
    return runs_on(images) and self_test(str(images.device), check) is None


def warp_batch(images: torch.Tensor, idx: torch.Tensor, theta: torch.Tensor, dtype: torch.dtype,
               channels_last: bool = True) -> torch.Tensor:
    """The augmented batch of a pack: images (N, H, W) uint8, idx (M, B) the rows each model
    trains on, theta (M * B, 2, 3) the sampling maps (for each output pixel, where to read in
    its image, in affine_grid's [-1, 1] units; augment.sampling_maps of the forward maps), model-major.

    Returns (B, M, 1, H, W) in [-1, 1] in `dtype`: the packed network's input, its (B, M, H, W)
    view channels-last (each pixel's M values adjacent) unless channels_last=False.
    """
    if images.dtype != torch.uint8 or images.dim() != 3:
        raise ValueError(f"expected (N, H, W) uint8 images, got {tuple(images.shape)} {images.dtype}")
    if idx.dim() != 2 or theta.shape != (idx.numel(), 2, 3):
        raise ValueError(f"expected idx (M, B) and theta (M*B, 2, 3), got {tuple(idx.shape)} and "
                         f"{tuple(theta.shape)}")
    k, b = idx.shape
    _, h, w = images.shape
    theta = theta.float().contiguous()
    if channels_last:
        out = torch.empty((b, h, w, k), dtype=dtype, device=images.device).permute(0, 3, 1, 2)
    else:
        out = torch.empty((b, k, h, w), dtype=dtype, device=images.device)
    so_b, so_m, _, so_p = out.stride()            # a pixel's step: W's stride (H's is W times it)
    bp, bm = TILES["pixels"], TILES["models"]
    launch(_warp, images, (triton.cdiv(h * w, bp), triton.cdiv(k, bm), b),
           images.contiguous(), idx.contiguous(), theta, out, k, b, h, w, so_b, so_m, so_p,
           BLOCK_P=bp, BLOCK_M=bm)
    return out.unsqueeze(2)


__all__ = ["TILES", "available", "warp_batch"]
