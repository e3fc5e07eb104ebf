"""`partfer run`: prepare the data, train every network on every fold, write the report.

The config is the one place a run's values live: the options here become config overrides
(`overrides_from`) and the run itself gets a RunRequest built in `cmd_run` alone.
"""
from __future__ import annotations

import argparse
import sys

from partfer.cli.help_format import add_command
from partfer.cli.overrides import set_overrides

HELP = "prepare data, train Baseline/FTL/EL on every fold, write the report"
DESCRIPTION = ("Prepare the data sets (or generate the config's synthetic ones), train Baseline, FTL and EL on "
               "every fold of each under the config's protocol, and write the report. Finished model stages in "
               "the store are reused, so the same command resumes. Options left out take the config's values.")


def add_run_parser(subparsers, with_arguments: bool = True) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "run", HELP, DESCRIPTION)
    if with_arguments:
        add_run_arguments(parser)
        parser.set_defaults(func=cmd_run)
    return parser


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    from partfer.orchestrator.execution.executor import EXECUTORS
    from partfer.orchestrator.networks import NETWORKS
    p.add_argument("--config", default="paper", help="config name in configs/ or a YAML path")
    p.add_argument("--datasets", help="NAME=ROOT[,NAME=ROOT]: raw data sets to prepare and train on "
                   "(left out: the config's synthetic data sets)")
    p.add_argument("--prepared", help="NAME=DIR[,NAME=DIR]: data sets already prepared (no raw files needed; "
                   "left out: none)")
    p.add_argument("--networks", help=f"comma list of {','.join(NETWORKS)} (left out: the config's `networks`)")
    p.add_argument("--epochs-scale", type=float,
                   help="multiply every epoch cap (marks the run as shrunk; left out: the config's, 1.0 in paper.yaml)")
    p.add_argument("--image-size", type=int, help="network input side (left out: the config's; paper: 160)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where packs train (left out: the config's `device`)")
    p.add_argument("--executor", choices=list(EXECUTORS),
                   help="inline: packs in this process; ray: packs as Ray tasks; train: Ray Train worker groups "
                        "(left out: the config's `executor`)")
    p.add_argument("--seed", type=int, help="seed of every model's initialisation and batches (left out: the config's)")
    p.add_argument("--out", help="storage root for prepared data, models and runs: a path, or an "
                   "object-store URI (s3://bucket/prefix, gs://..., file:///...) (left out: the config's "
                   "`storage`: partfer_store/, demo_out/ for the demo, relative to the current folder)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config value by dotted key, e.g. train.patience=10 (repeatable; left out: none)")
    p.add_argument("--shared-storage", action="store_true",
                   help="--out is a path every node of the cluster sees (NFS); required for a local path on several nodes")
    p.add_argument("--no-report", action="store_true", help="train only; build the report later")
    p.add_argument("--final", action="store_true",
                   help="after the cross-validated run, train each network's ensemble on ALL subjects of each "
                        "data set (fold -1), each stage for the median epoch the run's selection kept over "
                        "folds and members; `partfer export` then takes it by default")
    p.add_argument("--dry-run", action="store_true",
                   help="prepare the data, print the plan (packs, models, epochs, image-steps, projected "
                        "time from a rate measured in this store) and train nothing")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="print errors and the report's path only")
    talk.add_argument("-v", "--verbose", action="store_true", help="also print every pack's every epoch")


def overrides_from(args: argparse.Namespace) -> dict:
    over = {}
    if args.networks:
        over["networks"] = [n.strip() for n in args.networks.split(",") if n.strip()]
    for attr, key in (("epochs_scale", "epochs_scale"), ("image_size", "image_size"),
                      ("device", "device"), ("executor", "executor"), ("seed", "seed"), ("out", "storage")):
        value = getattr(args, attr)
        if value is not None:
            over[key] = value
    if getattr(args, "shared_storage", False):
        over["storage_shared"] = True
    over.update(set_overrides(args))
    return over


def cmd_run(args: argparse.Namespace) -> int:
    from partfer.orchestrator.config import load_config
    from partfer.data_prep.ray_console import set_ray_verbose
    from partfer.orchestrator.execution.progress import NORMAL, QUIET, VERBOSE, set_verbosity
    from partfer.orchestrator.execution.runner import RunRequest, parse_assignments, run
    from partfer.orchestrator.storage.remote import join
    from partfer.orchestrator.storage.root import open_store
    set_verbosity(QUIET if getattr(args, "quiet", False) else VERBOSE if getattr(args, "verbose", False) else NORMAL)
    set_ray_verbose(bool(getattr(args, "verbose", False)))
    cfg = load_config(args.config, overrides_from(args))
    req = RunRequest(config=cfg, datasets=parse_assignments(args.datasets, "--datasets"),
                     prepared=parse_assignments(args.prepared, "--prepared"), dry_run=args.dry_run)
    run_dir = run(req)
    if run_dir is None:
        if args.final:
            print("--final: the final models are planned once the cross-validated run has chosen their epochs")
        return 0
    if args.final:
        from partfer.orchestrator.execution.final import train_final_for_run
        train_final_for_run(run_dir, cfg)
    report = None
    if not args.no_report:
        from partfer.results.html import HTML_FILE
        from partfer.results.load import NoPredictionsError
        from partfer.results.report import build_report
        try:
            report = build_report(run_dir).with_name(HTML_FILE)
        except NoPredictionsError as exc:
            print(f"partfer run: error: {exc}", file=sys.stderr)
            return 1
    run_uri = open_store(cfg["storage"]).publish_run(run_dir)   # the report goes up too
    if run_uri:                         # print where, then this node's copy
        print(join(run_uri, report.name) if report else run_uri)
    print(report or run_dir)            # the last line: report.html, the page to open
    return 0
