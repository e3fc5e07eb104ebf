"""`partfer describe`: the configured network's parameter counts, GFLOPs and storage as JSON."""
from __future__ import annotations

import argparse
import json

from partfer.cli.help_format import add_command

HELP = "parameter counts, GFLOPs and storage as JSON"


def add_describe_parser(subparsers, with_arguments: bool = True) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "describe", HELP)
    if with_arguments:
        parser.add_argument("--image-size", type=int, default=160, help="network input side")
        parser.add_argument("--config", default="paper", help="config whose `model` section describes the network")
        parser.set_defaults(func=cmd_describe)
    return parser


def cmd_describe(args: argparse.Namespace) -> int:
    from partfer.models.config import ArchConfig
    from partfer.models.describe import describe
    from partfer.orchestrator.config import load_config
    arch = ArchConfig.from_config(load_config(args.config)["model"])     # the network the config trains
    print(json.dumps(describe(image_size=args.image_size, **arch.to_dict()), indent=2))
    return 0
