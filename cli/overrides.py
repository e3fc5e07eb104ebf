"""`--set KEY=VALUE`: any config value by dotted key, for every command that reads a config."""
from __future__ import annotations

import argparse


def set_overrides(args: argparse.Namespace) -> dict:
    """`--set KEY=VALUE` items as config overrides (ConfigError for an item without '=')."""
    from partfer.orchestrator.config import ConfigError, parse_value
    from partfer.orchestrator.messages import shown
    over = {}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {shown(item)}")
        key, value = item.split("=", 1)
        over[key.strip()] = parse_value(value)
    return over
