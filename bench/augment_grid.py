#!/usr/bin/env python
"""The augmentation's sampling grid: F.affine_grid (a batched GEMM against a base grid) against
orchestrator.augment.affine_grid (broadcast multiply-adds), each followed by the grid_sample the
trainer runs. Milliseconds per batch, best of --repeat.

    python bench/augment_grid.py                      # 400 grey 160x160 images on the CPU
    python bench/augment_grid.py --device cuda --images 1600
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a bare checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from orchestrator.augment import affine_grid  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(args.images, 2, 3, generator=gen).to(args.device)
    images = torch.rand(args.images, 1, args.size, args.size, generator=gen).to(args.device)
    grids = {"F.affine_grid": lambda: F.affine_grid(theta, list(images.shape), align_corners=False),
             "augment.affine_grid": lambda: affine_grid(theta, args.size, args.size)}
    diff = (grids["F.affine_grid"]() - grids["augment.affine_grid"]()).abs().max().item()
    for name, grid in grids.items():
        best = float("inf")
        for _ in range(args.repeat):
            if args.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            F.grid_sample(images, grid(), mode="bilinear", padding_mode="border", align_corners=False)
            if args.device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        print(f"{name:<20} {1000 * best:8.1f} ms  ({args.images} images {args.size}x{args.size}, {args.device})")
    print(f"largest grid difference {diff:.2g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
