"""The few Markdown pieces every table and the report are written with."""
from __future__ import annotations

import math
import re
from collections.abc import Sequence

# inline Markdown marks a heading may carry; GitHub drops them (and other punctuation) from ids
_UNLINKED = re.compile(r"[^\w\- ]")
CAPTION_MARK = "*Figure:"         # a caption line directly under a figure's image line


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


def slug(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return _UNLINKED.sub("", title.strip().lower()).replace(" ", "-")


def heading_anchors(text: str) -> list[tuple[int, str, str]]:
    """(level, title, anchor) of every heading of level 2 and below, in order; a repeated slug
    gets -1, -2, ... as GitHub does. report.md's contents and report.html's ids both use this."""
    seen: dict[str, int] = {}
    found = []
    for line in text.split("\n"):
        match = re.match(r"^(#{2,6})\s+(.*)$", line.strip())
        if not match:
            continue
        base = slug(match[2])
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.append((len(match[1]), match[2], base if count == 0 else f"{base}-{count}"))
    return found


def figure(path: str, alt: str, caption: str) -> str:
    """An image line and its caption line (report.html turns the pair into a <figure>)."""
    return f"![{alt}]({path})\n{CAPTION_MARK} {caption}*\n"
