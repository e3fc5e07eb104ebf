"""The few Markdown pieces every table and the report are written with."""
from __future__ import annotations

import math
from collections.abc import Sequence


def pct(value: float | None) -> str:
    """A fraction as a % with 2 decimals (the paper's precision); empty for an absent number."""
    return "" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A pipe table; cells are written as given (escape '|' in them beforehand)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def bullets(lines: Sequence[str]) -> str:
    return "".join(f"- {line}\n" for line in lines)
