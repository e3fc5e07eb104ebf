#!/usr/bin/env python
"""A pack's augmented training batch, route by route: milliseconds per batch (best of --repeat),
from the stored uint8 images and the rows each model draws to the network's input.

    torch, F.affine_grid   PyTorch's ops with F.affine_grid (a batched GEMM against a base grid)
    torch                  PyTorch's ops with orchestrator.training.augment.affine_grid (broadcast)
    fused                  models/kernels/warp.py: one Triton kernel, written in --dtype
                           (CUDA; on a CPU only with TRITON_INTERPRET=1, and then slow)

    python bench/augment_batch.py                                   # 400 images (8 x 50) on the CPU
    python bench/augment_batch.py --device cuda --models 50 --batch 32
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if not __package__:                              # run as a script, maybe from a bare checkout
    from checkout import ensure_partfer_importable  # noqa: E402  (bench/, beside this script)
    ensure_partfer_importable()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from partfer.models.kernels import warp  # noqa: E402
from partfer.orchestrator.training.batches import check_fused_route  # noqa: E402
from partfer.orchestrator.training.jobs import AugmentSettings  # noqa: E402
from partfer.orchestrator.training.augment import (normalise_pixels, random_transforms,  # noqa: E402
                                  sampling_maps, warp_images)


def _pack_layout(flat: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(M * B, 1, H, W) warped images -> the pack's (B, M, 1, H, W) input, as the PyTorch route lays it out."""
    m, b = idx.shape
    return flat.view(m, b, *flat.shape[-2:]).transpose(0, 1).unsqueeze(2).contiguous()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", type=int, default=8)
    p.add_argument("--batch", type=int, default=50, help="images per model")
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--stored", type=int, default=2048, help="images in the device-resident data set")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"], help="what the fused kernel writes")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    dev = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.stored, args.size, args.size), generator=gen, dtype=torch.uint8).to(dev)
    idx = torch.randint(0, args.stored, (args.models, args.batch), generator=gen).to(dev)
    forward = random_transforms(idx.numel(), AugmentSettings(), gen, "cpu")[0].to(dev)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    s = args.size

    def torch_affine_grid():
        flat = normalise_pixels(images[idx]).reshape(-1, 1, s, s)
        grid = F.affine_grid(sampling_maps(forward), [flat.shape[0], 1, s, s], align_corners=False)
        return _pack_layout(F.grid_sample(flat, grid, mode="bilinear", padding_mode="border",
                                          align_corners=False), idx)

    routes = {"torch, F.affine_grid": torch_affine_grid,
              "torch": lambda: _pack_layout(warp_images(normalise_pixels(images[idx]).reshape(-1, 1, s, s), forward),
                                            idx)}
    if warp.available(images, check_fused_route):
        routes["fused"] = lambda: warp.warp_batch(images, idx, sampling_maps(forward), dtype)
    else:
        print(f"fused: not run (no Triton kernel on {args.device}; CPUs need TRITON_INTERPRET=1)")
    ref = routes["torch"]().float()
    print(f"{idx.numel()} images ({args.models} models x {args.batch}) {s}x{s} from {args.stored} stored, "
          f"{args.device}")
    for name, route in routes.items():
        best = float("inf")
        for _ in range(args.repeat):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = route()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        diff = (out.float() - ref).abs().max().item()
        print(f"  {name:<22} {1000 * best:8.2f} ms   largest difference from 'torch' {diff:.2g} ({out.dtype})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
