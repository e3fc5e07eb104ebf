"""Lets a bench script import `partfer` from a bare checkout (the GPU machine has no install): the
repository root is the package, so a temporary folder holding a `partfer` link to it goes on sys.path."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ensure_partfer_importable() -> None:
    try:
        import partfer  # noqa: F401
        return
    except ImportError:
        pass
    holder = tempfile.mkdtemp(prefix="partfer-checkout-")
    os.symlink(REPO, os.path.join(holder, "partfer"))
    sys.path.insert(0, holder)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (holder, os.environ.get("PYTHONPATH")) if p)
