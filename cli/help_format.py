"""The help layout every `partfer` command shares: each option's default shown beside its help."""
from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help, unless there is none worth showing (None, False, an
    empty list) or its text already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not shows_default(action):
            return text
        return f"{text} (default: %(default)s)"


def shows_default(action: argparse.Action) -> bool:
    default = action.default
    return (bool(action.option_strings) and default is not None and default is not False
            and default is not argparse.SUPPRESS and default != [])


def add_command(subparsers, name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """One subcommand with the shared layout; its description is its one-line help unless it has
    a longer one."""
    return subparsers.add_parser(name, help=help, description=description or help, formatter_class=HelpFormatter)
