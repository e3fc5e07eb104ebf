#!/usr/bin/env python
"""Which CPU settings train fastest: the trainer's packed step (orchestrator.training.train.train_step,
through bench/train_throughput.make_step) on a CPU, side by side in one run.

    python bench/cpu_settings.py                          # 32 and 48 px, the full grid, Ray pairs
    python bench/cpu_settings.py --sizes 32 --seconds 1 --no-ray --json out.json

The grid: fp32 vs bf16 autocast, NCHW vs channels-last, packs of 1/5/10 models, 1 vs 2 torch
threads. Then the two ways a 2-core machine runs packs: Ray's two one-thread pack tasks at once
(the `ray` executor with train.cpus_per_pack 1) against one two-thread pack. Figures are
images/s summed over models (--batch per model, 32 by default). What configs/hardware/cpu.yaml and the `auto`
settings choose comes from these figures (BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

if not __package__:                              # run as a script, maybe from a bare checkout
    from checkout import ensure_partfer_importable  # noqa: E402  (bench/, beside this script)
    ensure_partfer_importable()

import torch  # noqa: E402

from train_throughput import make_step  # noqa: E402


def rate(image_size: int, models: int, precision: str, channels_last: bool, threads: int,
         seconds: float, batch: int) -> float:
    """Images/s of one pack stepping for about `seconds` after a warm-up. bf16 steps on a CPU are
    an order of magnitude slower: one warm-up and one timed step say so without taking an hour."""
    torch.set_num_threads(threads)
    step = make_step(models, "cpu", image_size, batch, precision, channels_last, n_images=512)
    least = 1 if precision == "bf16" else 3
    for _ in range(least):
        step()
    done, t0 = 0, time.perf_counter()
    while (time.perf_counter() - t0 < seconds and precision != "bf16") or done < least:
        step()
        done += 1
    return models * batch * done / (time.perf_counter() - t0)


def _ray_pack(image_size: int, models: int, precision: str, channels_last: bool, seconds: float, batch: int) -> float:
    return rate(image_size, models, precision, channels_last, 1, seconds, batch)


def ray_pair(image_size: int, models: int, precision: str, channels_last: bool, seconds: float, batch: int) -> float:
    """Two one-thread packs as Ray tasks at once (one CPU each), summed."""
    import ray
    task = ray.remote(num_cpus=1)(_ray_pack)
    return sum(ray.get([task.remote(image_size, models, precision, channels_last, seconds, batch) for _ in range(2)]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="32,48", help="input sides, comma list (default: 32,48)")
    ap.add_argument("--packs", default="1,5,10", help="models per pack, comma list (default: 1,5,10)")
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per figure (default: 2)")
    ap.add_argument("--batch", type=int, default=32, help="images per model a step (default: 32, the paper's)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray pairs")
    ap.add_argument("--json", help="write every figure here too")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    packs = [int(p) for p in args.packs.split(",")]
    rows = []
    print(f"CPU settings, batch {args.batch} per model, {os.cpu_count()} cores, torch {torch.__version__}, {platform.processor() or platform.machine()}",
          flush=True)
    print(f"{'px':>3} {'models':>6} {'threads':>7} {'fp32':>8} {'fp32 CL':>8} {'bf16':>8} {'bf16 CL':>8}  (img/s)", flush=True)
    for size in sizes:
        for models in packs:
            for threads in (1, 2):
                figures = {}
                for precision in ("fp32", "bf16"):
                    for cl in (False, True):
                        figures[(precision, cl)] = r = rate(size, models, precision, cl, threads, args.seconds, args.batch)
                        rows.append({"kind": "pack", "image_size": size, "models": models, "batch": args.batch, "threads": threads,
                                     "precision": precision, "channels_last": cl, "images_per_s": round(r, 1)})
                        _save(args.json, rows)
                print(f"{size:>3} {models:>6} {threads:>7} " + " ".join(f"{figures[k]:>8.0f}" for k in (
                    ("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))), flush=True)
    if not args.no_ray:
        import ray
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, address="local")
        print(f"\n{'px':>3} {'models':>6} {'layout':>6} {'one 2-thread pack':>18} {'Ray: two 1-thread packs':>24}", flush=True)
        for size in sizes:
            for models in packs:
                best = max((r for r in rows if r["kind"] == "pack" and r["image_size"] == size
                            and r["models"] == models and r["precision"] == "fp32"),
                           key=lambda r: r["images_per_s"])
                cl = best["channels_last"]
                one = rate(size, models, "fp32", cl, 2, args.seconds, args.batch)
                pair = ray_pair(size, models, "fp32", cl, args.seconds, args.batch)
                rows.append({"kind": "ray_pair", "image_size": size, "models": models, "batch": args.batch, "precision": "fp32",
                             "channels_last": cl, "one_two_thread_pack": round(one, 1),
                             "two_one_thread_ray_packs": round(pair, 1)})
                print(f"{size:>3} {models:>6} {'CL' if cl else 'NCHW':>6} {one:>18.0f} {pair:>24.0f}", flush=True)
                _save(args.json, rows)
        ray.shutdown()


def _save(path: str | None, rows: list[dict]) -> None:
    """Every figure so far, so a run cut short still leaves its results."""
    if path:
        with open(path, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
