"""`partfer`: the command line. This module is the composition root: it wires data_prep's,
orchestrator's and results' commands together (the packages themselves never import downstream).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

from partfer.orchestrator.config import EXECUTORS, NETWORKS, STAGES, ConfigError, load_config, parse_value
from partfer.orchestrator.storage.remote import join


def expected_errors() -> tuple[type[BaseException], ...]:
    """Whole-run problems a user can fix: reported in one line (PARTFER_DEBUG=1 shows the traceback)."""
    from partfer.data_prep.errors import (DatasetRootError, EmptyDatasetError, ModelFileError,
                                  PreparedDataError, UnknownNameError)
    from partfer.data_prep.readers.fer2013 import CsvLayoutError
    from partfer.orchestrator.execution.cluster import StorageNotSharedError
    from partfer.orchestrator.execution.executors import PackFailure
    from partfer.orchestrator.execution.final import FinalModelError
    from partfer.orchestrator.execution.folds import ProtocolError
    from partfer.orchestrator.storage.remote import StorageError
    return (ConfigError, ProtocolError, DatasetRootError, EmptyDatasetError, ModelFileError,
            PreparedDataError, UnknownNameError, CsvLayoutError, StorageNotSharedError, PackFailure,
            StorageError, FinalModelError)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="paper", help="config name in configs/ or a YAML path")
    p.add_argument("--datasets", help="NAME=ROOT[,NAME=ROOT]: raw data sets to prepare and train on "
                   "(left out: the config's synthetic data sets)")
    p.add_argument("--prepared", help="NAME=DIR[,NAME=DIR]: data sets already prepared (no raw files needed)")
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
                   "object-store URI (s3://bucket/prefix, gs://..., file:///...)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config value by dotted key, e.g. train.patience=10 (repeatable)")
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
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        over[key.strip()] = parse_value(value)
    return over


def cmd_run(args: argparse.Namespace) -> int:
    from partfer.orchestrator.execution.progress import NORMAL, QUIET, VERBOSE, set_verbosity
    from partfer.orchestrator.execution.runner import RunRequest, parse_assignments, run
    set_verbosity(QUIET if getattr(args, "quiet", False) else VERBOSE if getattr(args, "verbose", False) else NORMAL)
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
        from partfer.results.report import build_report
        report = build_report(run_dir).with_name(HTML_FILE)
    from partfer.orchestrator.storage.root import open_store
    run_uri = open_store(cfg["storage"]).publish_run(run_dir)   # the report goes up too
    if run_uri:                         # print where, then this node's copy
        print(join(run_uri, report.name) if report else run_uri)
    print(report or run_dir)            # the last line: report.html, the page to open
    return 0


def report_at_uri(report_command):
    """`partfer report` of a run directory given as a URI: results/ reads local files only, so
    the run and what its report reads are copied into this machine's cache first, and the
    rebuilt report is uploaded beside the run."""
    def command(args: argparse.Namespace) -> int:
        from partfer.orchestrator.storage.root import open_run
        try:
            run = open_run(args.run_dir)      # a URI: checked, then copied into this machine's cache
        except FileNotFoundError as exc:
            print(f"partfer report: error: {exc}", file=sys.stderr)
            return 2
        code = report_command(argparse.Namespace(**{**vars(args), "run_dir": str(run.local)}))
        published = run.publish() if code == 0 else None
        if published:
            from partfer.orchestrator.run_files import REPORT_FILE
            print(join(published, REPORT_FILE))
        return code
    return command


def cmd_describe(args: argparse.Namespace) -> int:
    from partfer.models.config import ArchConfig
    from partfer.models.describe import describe
    arch = ArchConfig.from_config(load_config(args.config)["model"])     # the network the config trains
    print(json.dumps(describe(image_size=args.image_size, **arch.to_dict()), indent=2))
    return 0


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help, unless there is none worth showing (None, False, an
    empty list) or its text already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not _shows_default(action):
            return text
        return f"{text} (default: %(default)s)"


def _shows_default(action: argparse.Action) -> bool:
    default = action.default
    return (bool(action.option_strings) and default is not None and default is not False
            and default is not argparse.SUPPRESS and default != [])


def known_choices() -> dict[tuple[str, str], list[str]]:
    """Options of other packages' subcommands whose values are a known set: (command, dest) -> values."""
    from partfer.data_prep.annotators.base import list_annotators
    from partfer.data_prep.detectors import list_detectors
    return {("tune", "network"): list(NETWORKS), ("tune", "stage"): list(STAGES),
            ("prep", "detector"): list(list_detectors()), ("prep", "annotator"): list(list_annotators())}


def polish(sub: argparse._SubParsersAction) -> None:
    """The same help on every subcommand, whichever package defines it: a description (its
    one-line help when it has none), each option's default, and choices where the values are known."""
    summaries = {a.dest: a.help for a in sub._choices_actions}
    choices = known_choices()
    for name, parser in sub.choices.items():
        parser.formatter_class = HelpFormatter
        if not parser.description:
            parser.description = summaries.get(name)
        for action in parser._actions:
            known = choices.get((name, action.dest))
            if known and action.choices is None:
                action.choices = known
            if not action.help and action.choices:
                action.help = f"one of {', '.join(map(str, action.choices))}"
            elif not action.help and _shows_default(action):
                action.help = "default: %(default)s"


def version_text() -> str:
    """`partfer --version`: the installed distribution's version (pyproject.toml when installed)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"partfer {version('partfer')}"
    except PackageNotFoundError:
        return "partfer (not installed as a distribution: `pip install -e .` gives it a version)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="partfer", description="Part-based, landmark-aware ensemble transfer learning for facial "
        "expression recognition (Wadhawan & Gandhi), orchestrated on Ray.", formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="prepare data, train Baseline/FTL/EL on every fold, write the report",
                       description="Prepare the data sets (or generate the config's synthetic ones), train "
                       "Baseline, FTL and EL on every fold of each under the config's protocol, and write the "
                       "report. Finished model stages in the store are reused, so the same command resumes. "
                       "Options left out take the config's values.")
    add_run_arguments(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("describe", help="parameter counts, GFLOPs and storage as JSON")
    p.add_argument("--image-size", type=int, default=160, help="network input side")
    p.add_argument("--config", default="paper", help="config whose `model` section describes the network")
    p.set_defaults(func=cmd_describe)
    from partfer.data_prep.cli import add_prep_parser, add_synth_parser
    add_synth_parser(sub)
    add_prep_parser(sub)
    from partfer.results.cli import add_report_parser
    report = add_report_parser(sub)
    report.set_defaults(func=report_at_uri(report.get_default("func")))
    from partfer.orchestrator.inference.export import add_export_parser
    from partfer.orchestrator.inference.predict import add_predict_parser
    add_export_parser(sub)
    add_predict_parser(sub)
    from partfer.orchestrator.tune.sweep import add_tune_parser
    add_tune_parser(sub)
    from partfer.cli.doctor import add_doctor_parser
    add_doctor_parser(sub)
    polish(sub)
    return parser


def refuse_credentials_in(argv: list[str]) -> None:
    """A URI with credentials anywhere on the command line (`--out s3://KEY:SECRET@bucket`,
    `--prepared NAME=URI`, a run directory) is refused before anything prints or writes it."""
    from partfer.orchestrator.storage.remote import refuse_credentials
    for arg in argv:
        for uri in re.findall(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s,]+", arg):
            refuse_credentials(uri)


def main(argv: list[str] | None = None) -> int:
    # Ray's auth is the cluster's: a client joining a cluster uses its token (RAY_AUTH_MODE=token
    # and ~/.ray/auth_token or RAY_AUTH_TOKEN); the private local Ray that partfer starts itself
    # gets a token of its own (data_prep.private_ray).
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        refuse_credentials_in(argv)
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except expected_errors() as exc:
        if os.environ.get("PARTFER_DEBUG"):
            raise
        from partfer.orchestrator.storage.remote import redact
        print(f"partfer: error: {redact(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        # a file that could not be written or read (a full disk, a read-only folder): its name and
        # the system's reason; an OSError naming no file is a bug and keeps its traceback
        if exc.filename is None or os.environ.get("PARTFER_DEBUG"):
            raise
        from partfer.orchestrator.storage.remote import redact
        print(f"partfer: error: {redact(exc.filename)}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("partfer: interrupted; finished stages are kept, run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
