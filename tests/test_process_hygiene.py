"""Tests end only processes they started, found by their ids: never by a name pattern (pgrep,
pkill, killall), and never `ray stop`, which kills every Ray process of the user (other runs, other
users' tests on a shared machine)."""
from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
BY_NAME = re.compile(r"""["'](pgrep|pkill|killall)["']""")
RAY_STOP = re.compile(r"""(\bRAY\b|["']ray["'])\s*,\s*["']stop["']""")


def test_no_test_finds_or_ends_processes_by_name():
    offenders = [f"{path.relative_to(TESTS)}:{i}: {line.strip()}"
                 for path in sorted(TESTS.rglob("*.py")) if path != Path(__file__).resolve()
                 for i, line in enumerate(path.read_text().splitlines(), 1)
                 if BY_NAME.search(line) or RAY_STOP.search(line)]
    assert not offenders, offenders
