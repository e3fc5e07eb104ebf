"""Ray's own messages off the console by default: its INFO lines (a local Ray started, Ray Data's
execution plans and progress blocks) would bury partfer's progress lines. Ray Data's still go to
its log file (ray-data.log in the Ray session's logs folder); Ray's warnings and errors still show.
`partfer run -v` brings the INFO lines back.
"""
from __future__ import annotations

import logging
import sys

RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune")
_verbose = False


def set_ray_verbose(verbose: bool) -> None:
    """Whether Ray's INFO lines reach the console (applied now and whenever Ray starts)."""
    global _verbose
    _verbose = bool(verbose)
    apply()


def apply() -> None:
    """Set the console handlers Ray has configured so far; file handlers keep everything. Call it
    again after importing a part of Ray that configures its own (ray.data does on import)."""
    if "ray" not in sys.modules:
        return
    level = logging.INFO if _verbose else logging.WARNING
    for name in RAY_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(level)
