#!/usr/bin/env python
"""A pack's augmented training batch, route by route: milliseconds per batch (best of --repeat),
from the stored uint8 images and the rows each model draws to the network's input.

    torch, F.affine_grid   PyTorch's ops with F.affine_grid (a batched GEMM against a base grid)
    torch                  PyTorch's ops with orchestrator.augment.affine_grid (broadcast)
    fused                  orchestrator/fused_augment.py: one Triton kernel, written in --dtype
                           (CUDA; on a CPU only with TRITON_INTERPRET=1, and then slow)

    python bench/augment_batch.py                                   # 400 images (8 x 50) on the CPU
    python bench/augment_batch.py --device cuda --models 50 --batch 32
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a bare checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from orchestrator import augment, fused_augment  # noqa: E402
from orchestrator.augment import AugmentSettings  # noqa: E402
from orchestrator.batches import augmented_batch  # noqa: E402


def _torch_affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return F.affine_grid(theta, [theta.shape[0], 1, height, width], align_corners=False)


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
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    aug = AugmentSettings()
    routes = {"torch, F.affine_grid": dict(fused=False), "torch": dict(fused=False)}
    if fused_augment.available(images):
        routes["fused"] = dict(fused=True, dtype=dtype)
    else:
        print(f"fused: not run (no Triton kernel on {args.device}; CPUs need TRITON_INTERPRET=1)")

    def batch(name: str) -> torch.Tensor:
        rng = torch.Generator(device=dev).manual_seed(1)      # the same transforms on every route
        with mock.patch.object(augment, "affine_grid", _torch_affine_grid) if "F.affine" in name \
                else mock.patch.object(augment, "affine_grid", augment.affine_grid):
            return augmented_batch(images, idx, aug, rng, channels_last=True, **routes[name])[0]

    ref = batch("torch").float()
    n = args.models * args.batch
    print(f"{n} images ({args.models} models x {args.batch}) {args.size}x{args.size} from {args.stored} "
          f"stored, {args.device}")
    for name in routes:
        best = float("inf")
        for _ in range(args.repeat):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = batch(name)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        diff = (out.float() - ref).abs().max().item()
        print(f"  {name:<22} {1000 * best:8.2f} ms   largest difference from 'torch' {diff:.2g} ({out.dtype})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
