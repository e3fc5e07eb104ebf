#!/usr/bin/env python
"""Training-step throughput: one model per task (the naive baseline) against the packed path.

Runs the same step the trainer runs (class-balanced sampling from a device-resident uint8 data set,
on-device affine augmentation, forward, per-model loss, backward, Adam), on synthetic data, with no
Ray import, so it runs on a bare GPU machine:

    python bench/train_throughput.py                      # auto: cuda if available
    python bench/train_throughput.py --device cpu --image-size 48 --pack 5 --steps 10

Prints images/s (summed over models), the ratio, peak GPU memory, and the projected wall time of
the paper's full reproduction (~75 million image-steps at the paper's epoch caps).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from models.packed import PackedNetwork
from orchestrator.augment import AugmentSettings, apply_transforms, normalise_pixels, random_transforms
from orchestrator.train import _forward, _stage_loss

PAPER_IMAGE_STEPS = 75e6


def measure(n_models: int, device: str, image_size: int, batch: int, steps: int, warmup: int,
            precision: str, channels_last: bool, n_images: int = 2048, n_classes: int = 7) -> dict:
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(0)
    images = torch.randint(0, 256, (n_images, image_size, image_size), dtype=torch.uint8, device=dev)
    labels = torch.randint(0, n_classes, (n_images,), device=dev)
    net = PackedNetwork(n_models, n_classes, None, seeds=list(range(n_models))).to(dev)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.set_stage_mode("baseline")
    opt = torch.optim.Adam(net.trainable_parameters("baseline"), lr=1e-3, eps=1e-7)
    weights = torch.ones(n_models, n_images, device=dev)
    aug = AugmentSettings()
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" and device == "cuda"
                else torch.autocast("cpu", enabled=False))

    def step():
        idx = torch.multinomial(weights, batch, replacement=True, generator=gen)
        flat = normalise_pixels(images[idx]).reshape(-1, 1, image_size, image_size)
        fwd, flipped = random_transforms(flat.shape[0], aug, gen, dev)
        flat, _ = apply_transforms(flat, None, fwd, flipped)
        x = flat.view(n_models, batch, image_size, image_size).transpose(0, 1).unsqueeze(2).contiguous()
        with autocast:
            _, logits = _forward(net, x, False, True)
            loss = _stage_loss("baseline", net, None, logits, labels[idx].t(), None, None)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    rate = n_models * batch * steps / seconds
    return {"models": n_models, "precision": precision, "channels_last": channels_last,
            "images_per_s": round(rate, 1), "step_ms": round(1000 * seconds / steps, 2),
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--pack", type=int, default=50, help="models in the packed run")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    common = dict(device=device, image_size=args.image_size, batch=args.batch, steps=args.steps,
                  warmup=args.warmup)
    naive = measure(1, precision="fp32", channels_last=False, **common)
    packed = measure(args.pack, precision="bf16" if device == "cuda" else "fp32",
                     channels_last=True, **common)
    ratio = packed["images_per_s"] / naive["images_per_s"]
    out = {"device": device, "gpu": gpu, "torch": torch.__version__, "image_size": args.image_size,
           "batch_per_model": args.batch, "naive": naive, "packed": packed, "ratio": round(ratio, 2),
           "projected_paper_hours_naive": round(PAPER_IMAGE_STEPS / naive["images_per_s"] / 3600, 2),
           "projected_paper_hours_packed": round(PAPER_IMAGE_STEPS / packed["images_per_s"] / 3600, 2)}
    print(f"device {device} {gpu or ''} image {args.image_size} batch {args.batch}/model")
    for name in ("naive", "packed"):
        r = out[name]
        print(f"  {name:<7} M={r['models']:<3} {r['precision']:<4} channels_last={r['channels_last']!s:<5} "
              f"{r['images_per_s']:>9.1f} img/s  {r['step_ms']:>8.2f} ms/step"
              + (f"  peak {r['peak_gpu_mb']} MB" if r["peak_gpu_mb"] else ""))
    print(f"  packed / naive = {ratio:.2f}x; full paper (~75M image-steps): "
          f"{out['projected_paper_hours_naive']} h naive, {out['projected_paper_hours_packed']} h packed")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
