"""`partfer export`: one trained ensemble of a run -> a self-contained model directory
(orchestrator.inference.export.export_model does the work)."""
from __future__ import annotations

import argparse
import sys

from partfer.cli.help_format import add_command

EXIT_USAGE = 2
HELP = "write one trained ensemble of a run as a self-contained model directory"
DESCRIPTION = ("Copy the final sub-networks of one (data set, network) of a run, with their "
               "classes, preprocessing settings and architecture, into a model directory that "
               "`partfer predict` uses. With --all-folds the ensemble is every fold's members "
               "(5 x K sub-networks; their softmax vectors are summed).")


def add_export_parser(subparsers, with_arguments: bool = True) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "export", HELP, DESCRIPTION)
    if not with_arguments:
        return parser
    from partfer.orchestrator.networks import NETWORKS

    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (<storage>/runs/<run_id>)")
    parser.add_argument("--dataset", required=True, help="data set the ensemble was trained on")
    parser.add_argument("--network", required=True, choices=list(NETWORKS), help="network whose ensemble to export")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--fold", type=int, default=None,
                       help="fold whose models to export (default: the final model on all subjects when the run "
                            "has one, else the first fold)")
    which.add_argument("--all-folds", action="store_true", help="export every fold's models as one ensemble")
    parser.add_argument("--out", required=True, help="model directory to write (replaced if it is one)")
    parser.set_defaults(func=export_command)
    return parser


def export_command(args: argparse.Namespace) -> int:
    from partfer.orchestrator.execution.final import FINAL_FOLD
    from partfer.orchestrator.inference.export import export_model
    try:
        result = export_model(args.run_dir, args.dataset, args.network, args.out, fold=args.fold,
                              all_folds=args.all_folds)
    except (ValueError, FileNotFoundError) as err:   # RunDirError, ExportError, ModelFormatError ...
        print(f"partfer export: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    spec = result.spec
    print(result.out)
    which = ("final model (all subjects)" if spec.folds == [FINAL_FOLD]
             else f"fold(s) {', '.join(map(str, spec.folds))}")
    print(f"{spec.network} on {spec.dataset}, {which}: "
          f"{len(spec.members)} sub-networks, classes {', '.join(spec.classes)}", file=sys.stderr)
    return 0
