"""`partfer report RUN_DIR`: rebuild a run's tables, figures and report from its files alone.

results/ reads local files only, so a run directory given as a URI is copied into this machine's
cache first and the rebuilt report is uploaded beside the run. `python -m partfer.results report
RUN_DIR` runs this command alone (`main`).
"""
from __future__ import annotations

import argparse
import sys

from partfer.cli.help_format import add_command

HELP = "rebuild tables, confusion matrices, figures, report.md and report.html"
DESCRIPTION = ("Rebuild every table, confusion matrix, figure, report.md and report.html of "
               "a run directory from plan.json and the files it points to.")


def add_report_parser(subparsers, with_arguments: bool = True) -> argparse.ArgumentParser:
    """Register `report RUN_DIR` on an argparse subparsers object; its `func` returns the exit code."""
    parser = add_command(subparsers, "report", HELP, DESCRIPTION)
    if with_arguments:
        parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds plan.json); "
                            "through `partfer`, also its URI when the store is an object store")
        parser.add_argument("--embed-images", action="store_true",
                            help="put the figures into report.html as base64 data (one file to send "
                                 "around) instead of linking them relatively")
        parser.add_argument("--store", metavar="DIR", default=None,
                            help="the local folder holding the run's models/ (default: the store "
                                 "plan.json records, or the folder above runs/ when the run sits "
                                 "in one; whichever holds its predictions)")
        parser.set_defaults(func=report_at_uri(report_command))
    return parser


def report_command(args: argparse.Namespace) -> int:
    """Build the report, print its path. A directory without a usable plan exits 2; a run with no
    usable predictions at all exits 1 and leaves its existing report untouched."""
    from partfer.results.load import NoPredictionsError, PlanError, RunDirError
    from partfer.results.report import build_report
    store = getattr(args, "store", None)
    if store is not None and "://" in store:
        print(f"partfer report: error: --store {store}: a local folder is expected (give the run "
              "directory's URI instead: its store is copied with it)", file=sys.stderr)
        return 2
    try:
        path = build_report(args.run_dir, embed_images=args.embed_images, store=store)
    except (RunDirError, PlanError) as exc:
        print(f"partfer report: error: {exc}", file=sys.stderr)
        return 2
    except NoPredictionsError as exc:
        print(f"partfer report: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:          # a file that cannot be written (a full disk): named, in one line
        if exc.filename is None:
            raise
        print(f"partfer report: error: {exc.filename}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 2
    print(path)
    return 0


def report_at_uri(report_command):
    """`partfer report` of a run directory given as a URI: results/ reads local files only, so
    the run and what its report reads are copied into this machine's cache first, and the
    rebuilt report is uploaded beside the run."""
    def command(args: argparse.Namespace) -> int:
        from partfer.orchestrator.storage.remote import join
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m partfer.results")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_report_parser(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)
