"""The `partfer` command: one parser over every room (prep, run, tune, report, export, predict, doctor)."""
from partfer.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
