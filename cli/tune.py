"""`partfer tune`: a Ray Tune sweep of one stage's learning rate for one network; the options
fill an orchestrator.tune.sweep.SweepRequest."""
from __future__ import annotations

import argparse

from partfer.cli.help_format import add_command
from partfer.cli.overrides import set_overrides

HELP = "Ray Tune sweep of one stage's learning rate for one network"


def add_tune_parser(subparsers, with_arguments: bool = True) -> argparse.ArgumentParser:
    p = add_command(subparsers, "tune", HELP)
    if not with_arguments:
        return p
    from partfer.orchestrator.config import STAGES
    from partfer.orchestrator.networks import NETWORKS

    p.add_argument("--config", default="paper", help="config name in configs/ or a YAML path")
    p.add_argument("--dataset", required=True, help="the data set to sweep on (a name in the config)")
    p.add_argument("--network", required=True, choices=list(NETWORKS), help="baseline, ftl or el")
    p.add_argument("--stage", required=True, choices=list(STAGES), help="baseline, landmark, head or finetune")
    p.add_argument("--lr", default="loguniform:1e-5:1e-2",
                   help="search space: loguniform:A:B, uniform:A:B, choice:a,b or grid:a,b")
    p.add_argument("--batch-size", help="optional search space of train.batch_size (choice:... or grid:...; "
                   "left out: the config's batch size, not searched)")
    p.add_argument("--samples", type=int, default=8, help="points drawn (times each grid combination)")
    p.add_argument("--scheduler", choices=["asha", "fifo"], default="asha", help="one of asha, fifo")
    p.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial may be stopped (left out: a quarter of the "
                   "stage's epochs, at least 1)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: CPUs, or GPUs / share)")
    p.add_argument("--gpus-per-trial", type=float, help="GPU share of a trial on CUDA (default train.gpus_per_pack)")
    p.add_argument("--datasets", help="NAME=ROOT[,NAME=ROOT]: raw data sets to prepare "
                   "(left out: the config's synthetic data sets)")
    p.add_argument("--prepared", help="NAME=DIR[,NAME=DIR]: data sets already prepared (left out: none)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="one of auto, cpu, cuda (left out: the config's `device`)")
    p.add_argument("--out", help="storage root (the run store whose models are reused; left out: "
                   "the config's `storage`)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config value by dotted key (repeatable; left out: none)")
    p.set_defaults(func=cmd_tune)
    return p


def request_from(args: argparse.Namespace):
    """The SweepRequest the options describe (--out and --device become config overrides)."""
    from partfer.orchestrator.execution.runner import parse_assignments
    from partfer.orchestrator.tune.sweep import SweepRequest
    overrides = set_overrides(args)
    if args.out:
        overrides["storage"] = args.out
    if args.device:
        overrides["device"] = args.device
    return SweepRequest(config=args.config, dataset=args.dataset, network=args.network, stage=args.stage,
                        lr=args.lr, batch_size=args.batch_size, samples=args.samples,
                        scheduler=args.scheduler, overrides=overrides,
                        datasets=parse_assignments(args.datasets, "--datasets"),
                        prepared=parse_assignments(args.prepared, "--prepared"),
                        max_concurrent=args.max_concurrent, gpus_per_trial=args.gpus_per_trial,
                        grace_period=args.grace_period)


def cmd_tune(args: argparse.Namespace) -> int:
    from partfer.orchestrator.tune.sweep import run_sweep
    result = run_sweep(request_from(args))
    if result.best:
        print(f"best: lr {result.best['lr']} (val loss {result.best['best_val_loss']:.4f})")
    for name, path in result.files.items():
        print(f"{name}: {path}")
    return 0
