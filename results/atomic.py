"""Atomic report files: a reader (or a crashed rebuild) never sees a half-written one. The
writing itself is the project's one atomic-write module (atomicio); this names it for results/."""
from __future__ import annotations

from partfer.atomicio import save_figure, write_bytes, write_text

__all__ = ["save_figure", "write_bytes", "write_text"]
