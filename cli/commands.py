"""`partfer`: the command line. This module is the composition root: one parser over every
command module of cli/ (run, describe, synth, prep, report, export, predict, tune, doctor).

Each command module builds its own options and imports the layers it drives only inside the
functions that need them, so `main` builds the options of the one command asked for (every
command is listed, with its help, for `partfer --help`) and `partfer --help` imports no layer.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Collection

from partfer.cli.describe import add_describe_parser
from partfer.cli.doctor import add_doctor_parser
from partfer.cli.export import add_export_parser
from partfer.cli.help_format import HelpFormatter
from partfer.cli.predict import add_predict_parser
from partfer.cli.prep import add_prep_parser, add_synth_parser
from partfer.cli.report import add_report_parser
from partfer.cli.run import add_run_parser
from partfer.cli.tune import add_tune_parser

# name -> fn(subparsers, with_arguments) adding that command; the order is `partfer --help`'s
COMMANDS = {
    "run": add_run_parser, "describe": add_describe_parser, "synth": add_synth_parser,
    "prep": add_prep_parser, "report": add_report_parser, "export": add_export_parser,
    "predict": add_predict_parser, "tune": add_tune_parser, "doctor": add_doctor_parser,
}


def expected_errors() -> tuple[type[BaseException], ...]:
    """Whole-run problems a user can fix: reported in one line (PARTFER_DEBUG=1 shows the traceback)."""
    from partfer.data_prep.errors import (DatasetRootError, EmptyDatasetError, ModelFileError,
                                  PreparedDataError, UnknownNameError)
    from partfer.data_prep.readers.fer2013 import CsvLayoutError
    from partfer.orchestrator.config import ConfigError
    from partfer.orchestrator.execution.cluster import StorageNotSharedError
    from partfer.orchestrator.execution.executors import PackFailure
    from partfer.orchestrator.execution.final import FinalModelError
    from partfer.orchestrator.execution.folds import ProtocolError
    from partfer.orchestrator.storage.remote import StorageError
    return (ConfigError, ProtocolError, DatasetRootError, EmptyDatasetError, ModelFileError,
            PreparedDataError, UnknownNameError, CsvLayoutError, StorageNotSharedError, PackFailure,
            StorageError, FinalModelError)


def version_text() -> str:
    """`partfer --version`: the installed distribution's version (pyproject.toml when installed)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"partfer {version('partfer')}"
    except PackageNotFoundError:
        return "partfer (not installed as a distribution: `pip install -e .` gives it a version)"


class VersionAction(argparse.Action):
    """`--version`, with the version read only when it is asked for (reading a distribution's
    metadata takes longer than building the whole parser)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show program's version number and exit"):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        formatter = parser._get_formatter()
        formatter.add_text(version_text())
        parser._print_message(formatter.format_help(), sys.stdout)
        parser.exit()


def build_parser(commands: Collection[str | None] | None = None) -> argparse.ArgumentParser:
    """The `partfer` parser: every command's options, or only those of `commands` when given (the
    others are listed with their help, which is all `partfer --help` shows of them)."""
    parser = argparse.ArgumentParser(
        prog="partfer", description="Part-based, landmark-aware ensemble transfer learning for facial "
        "expression recognition (Wadhawan & Gandhi), orchestrated on Ray.", formatter_class=HelpFormatter)
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add in COMMANDS.items():
        add(sub, with_arguments=commands is None or name in commands)
    return parser


def command_in(argv: list[str]) -> str | None:
    """The command argparse will run: the first argument that is not an option (the top level's
    options, -h and --version, take no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def refuse_credentials_in(argv: list[str]) -> None:
    """A URI with credentials anywhere on the command line (`--out s3://KEY:SECRET@bucket`,
    `--prepared NAME=URI`, a run directory) is refused before anything prints or writes it."""
    if not any("://" in arg for arg in argv):
        return
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
        args = build_parser({command_in(argv)}).parse_args(argv)
        return int(args.func(args) or 0)
    except SystemExit:
        raise           # help, --version and usage errors: argparse has printed them
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
