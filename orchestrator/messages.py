"""How an error message names a value a user gave: whole when short, its two ends when long.

A message names the offending value so the user can find it; it never dumps one. A 100,000-character
--set value or a 50,000-element list shows as its start, its end and how much was left between.
"""
from __future__ import annotations

from typing import Any

SHOWN_MAX = 60          # characters of a value's repr shown whole
SHOWN_TAIL = 12         # of a longer one: what is kept of its end (the rest of SHOWN_MAX is its start)


def shown(value: Any) -> str:
    """repr(value), or its first and last characters and the count left out between them."""
    text = repr(value)
    if len(text) <= SHOWN_MAX:
        return text
    head = SHOWN_MAX - SHOWN_TAIL
    return f"{text[:head]}[... {len(text) - SHOWN_MAX:,} characters left out ...]{text[-SHOWN_TAIL:]}"
