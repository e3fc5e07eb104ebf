"""`partfer`: the command line. This module is the composition root: it wires data_prep's,
orchestrator's and results' commands together (the packages themselves never import downstream).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

from orchestrator.config import ConfigError, load_config, parse_value
from orchestrator.remote import basename, is_uri, join


def expected_errors() -> tuple[type[BaseException], ...]:
    """Whole-run problems a user can fix: reported in one line (PARTFER_DEBUG=1 shows the traceback)."""
    from data_prep.errors import (DatasetRootError, EmptyDatasetError, ModelFileError,
                                  PreparedDataError, UnknownNameError)
    from data_prep.readers.fer2013 import CsvLayoutError
    from orchestrator.cluster import StorageNotSharedError
    from orchestrator.executors import PackFailure
    from orchestrator.folds import ProtocolError
    from orchestrator.remote import StorageError
    return (ConfigError, ProtocolError, DatasetRootError, EmptyDatasetError, ModelFileError,
            PreparedDataError, UnknownNameError, CsvLayoutError, StorageNotSharedError, PackFailure,
            StorageError)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="paper", help="config name in configs/ or a YAML path")
    p.add_argument("--datasets", help="NAME=ROOT[,NAME=ROOT]: raw data sets to prepare and train on")
    p.add_argument("--prepared", help="NAME=DIR[,NAME=DIR]: data sets already prepared (no raw files needed)")
    p.add_argument("--networks", help="comma list of baseline,ftl,el")
    p.add_argument("--epochs-scale", type=float, help="multiply every epoch cap (marks the run as shrunk)")
    p.add_argument("--image-size", type=int, help="network input side (paper: 160)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--executor", choices=["ray", "inline"])
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="storage root for prepared data, models and runs: a path, or an "
                   "object-store URI (s3://bucket/prefix, gs://..., file:///...)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config value by dotted key, e.g. train.patience=10 (repeatable)")
    p.add_argument("--shared-storage", action="store_true",
                   help="--out is a path every node of the cluster sees (NFS); required for a local path on several nodes")
    p.add_argument("--no-report", action="store_true", help="train only; build the report later")
    p.add_argument("--dry-run", action="store_true",
                   help="prepare the data, print the plan (packs, models, epochs, image-steps, projected "
                        "time from a rate measured in this store) and train nothing")


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
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        over[key.strip()] = parse_value(value)
    return over


def cmd_run(args: argparse.Namespace) -> int:
    from orchestrator.runner import RunRequest, parse_assignments, run
    cfg = load_config(args.config, overrides_from(args))
    req = RunRequest(config=cfg, datasets=parse_assignments(args.datasets, "--datasets"),
                     prepared=parse_assignments(args.prepared, "--prepared"), dry_run=args.dry_run)
    run_dir = run(req)
    if run_dir is None:
        return 0
    report = None
    if not args.no_report:
        from results.report import build_report
        report = build_report(run_dir)
    if is_uri(cfg["storage"]):         # the report goes up too: print where, then this node's copy
        from orchestrator.store import push_run
        run_uri = push_run(run_dir, join(cfg["storage"], "runs", basename(run_dir)))
        print(join(run_uri, report.name) if report else run_uri)
    print(report or run_dir)
    return 0


def report_at_uri(report_command):
    """`partfer report` of a run directory given as a URI: results/ reads local files only, so
    the run and what its report reads are copied into this machine's cache first, and the
    rebuilt report is uploaded beside the run."""
    def command(args: argparse.Namespace) -> int:
        uri = args.run_dir
        if not is_uri(uri):
            return report_command(args)
        from orchestrator.remote import check
        from orchestrator.store import pull_run, push_run
        check(uri, write=False)
        try:
            local = pull_run(uri)
        except FileNotFoundError as exc:
            print(f"partfer report: error: {exc}", file=sys.stderr)
            return 2
        code = report_command(argparse.Namespace(**{**vars(args), "run_dir": str(local)}))
        if code == 0:
            from results.report import REPORT_FILE
            push_run(local, uri)
            print(join(uri, REPORT_FILE))
        return code
    return command


def cmd_describe(args: argparse.Namespace) -> int:
    from models.describe import describe
    print(json.dumps(describe(image_size=args.image_size), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="partfer", description="Part-based, landmark-aware ensemble transfer learning for facial "
        "expression recognition (Wadhawan & Gandhi), orchestrated on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="prepare data, train Baseline/FTL/EL on every fold, write the report")
    add_run_arguments(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("describe", help="parameter counts, GFLOPs and storage as JSON")
    p.add_argument("--image-size", type=int, default=160)
    p.set_defaults(func=cmd_describe)
    from data_prep.cli import add_prep_parser, add_synth_parser
    add_synth_parser(sub)
    add_prep_parser(sub)
    from results.cli import add_report_parser
    report = add_report_parser(sub)
    report.set_defaults(func=report_at_uri(report.get_default("func")))
    from orchestrator.export import add_export_parser
    from orchestrator.predict import add_predict_parser
    add_export_parser(sub)
    add_predict_parser(sub)
    from orchestrator.tune import add_tune_parser
    add_tune_parser(sub)
    return parser


def refuse_credentials_in(argv: list[str]) -> None:
    """A URI with credentials anywhere on the command line (`--out s3://KEY:SECRET@bucket`,
    `--prepared NAME=URI`, a run directory) is refused before anything prints or writes it."""
    from orchestrator.remote import refuse_credentials
    for arg in argv:
        for uri in re.findall(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s,]+", arg):
            refuse_credentials(uri)


def main(argv: list[str] | None = None) -> int:
    # Ray's auth is the cluster's: a client joining a cluster uses its token (RAY_AUTH_MODE=token
    # and ~/.ray/auth_token or RAY_AUTH_TOKEN); only the private local Ray that partfer starts
    # itself runs without one (orchestrator.cluster.connect, data_prep.pipeline.ensure_ray).
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        refuse_credentials_in(argv)
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except expected_errors() as exc:
        if os.environ.get("PARTFER_DEBUG"):
            raise
        from orchestrator.remote import redact
        print(f"partfer: error: {redact(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("partfer: interrupted; finished stages are kept, run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
