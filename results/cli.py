"""`partfer report RUN_DIR`: rebuild a run's tables, figures and report from its files alone."""
from __future__ import annotations

import argparse
import sys

from partfer.results.load import PlanError, RunDirError
from partfer.results.report import build_report


def report_command(args: argparse.Namespace) -> int:
    """Build the report, print its path; a directory without a usable plan exits 2."""
    try:
        path = build_report(args.run_dir, embed_images=args.embed_images)
    except (RunDirError, PlanError) as exc:
        print(f"partfer report: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:          # a file that cannot be written (a full disk): named, in one line
        if exc.filename is None:
            raise
        print(f"partfer report: error: {exc.filename}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 2
    print(path)
    return 0


def add_report_parser(subparsers) -> argparse.ArgumentParser:
    """Register `report RUN_DIR` on an argparse subparsers object; its `func` returns the exit code."""
    parser = subparsers.add_parser(
        "report", help="rebuild tables, confusion matrices, figures, report.md and report.html",
        description="Rebuild every table, confusion matrix, figure, report.md and report.html of "
                    "a run directory from plan.json and the files it points to.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds plan.json); "
                        "through `partfer`, also its URI when the store is an object store")
    parser.add_argument("--embed-images", action="store_true",
                        help="put the figures into report.html as base64 data (one file to send "
                             "around) instead of linking them relatively")
    parser.set_defaults(func=report_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m partfer.results")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_report_parser(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)
