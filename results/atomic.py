"""Atomic file writes: a reader (or a crashed rebuild) never sees a half-written report file."""
from __future__ import annotations

import os
from pathlib import Path


def _temp_path(path: Path) -> Path:
    # Same directory as the target, so os.replace is a rename on one file system.
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` via a temporary sibling and os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text(path: Path, text: str) -> Path:
    """Atomic UTF-8 text write (newlines kept as given, so rebuilds are byte-identical)."""
    return write_bytes(path, text.encode("utf-8"))


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically; no metadata that changes between builds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
