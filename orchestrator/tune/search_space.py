"""Search spaces written as short strings (`loguniform:1e-5:1e-2`, `choice:16,32`), and the sweep's
points drawn from them.

Points are drawn here, on the driver, with the config's seed, rather than by Tune's samplers:
a sweep is then reproducible, never trains the same point twice (a model's key depends only on
its settings, so a repeated point would race another trial for the same output directory), and
the driver knows every batch size before the sweep starts (earlier stages are trained once per
batch size, before any trial). Continuous values are rounded to 3 significant digits so that the
number printed in the results, typed back as `--set train.lr.finetune=...`, is the same key.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from partfer.orchestrator.config import ConfigError, parse_value

KINDS = ("loguniform", "uniform", "choice", "grid")


class SearchSpaceError(ConfigError):
    """A search-space string that cannot be read."""


@dataclass(frozen=True)
class Space:
    kind: str                         # loguniform | uniform | choice | grid
    low: float | None = None          # continuous kinds
    high: float | None = None
    values: tuple = ()                # choice / grid

    @property
    def finite(self) -> bool:
        return self.kind in ("choice", "grid")


def _scalar(text: str):
    """A number as written (`1e-5` included, which YAML 1.1 reads as a string), else YAML's reading."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return parse_value(text)


def _number(text: str, whole: str, name: str) -> float:
    value = _scalar(text.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SearchSpaceError(f"{name}: {text.strip()!r} is not a finite number in {whole!r}")
    return float(value)


def parse_space(text: str, name: str = "space") -> Space:
    """`loguniform:A:B`, `uniform:A:B`, `choice:a,b,c` or `grid:a,b,c` -> Space."""
    kind, sep, rest = text.strip().partition(":")
    if not sep or kind not in KINDS:
        raise SearchSpaceError(f"{name}: {text!r} must look like KIND:..., with KIND one of {', '.join(KINDS)}")
    if kind in ("loguniform", "uniform"):
        bounds = rest.split(":")
        if len(bounds) != 2:
            raise SearchSpaceError(f"{name}: {text!r} must be {kind}:LOW:HIGH")
        low, high = (_number(b, text, name) for b in bounds)
        if not low < high:
            raise SearchSpaceError(f"{name}: {text!r} needs LOW < HIGH")
        if kind == "loguniform" and low <= 0:
            raise SearchSpaceError(f"{name}: {text!r} needs LOW > 0 (a log scale)")
        return Space(kind, low=low, high=high)
    items = [v for v in rest.split(",")]
    if not rest.strip() or any(not v.strip() for v in items):
        raise SearchSpaceError(f"{name}: {text!r} must list values as {kind}:a,b,c")
    values = tuple(dict.fromkeys(_scalar(v.strip()) for v in items))   # drop repeats, keep order
    return Space(kind, values=values)


def numeric_space(space: Space, name: str, integer: bool = False, positive: bool = True) -> Space:
    """Check a space's values suit a numeric setting (a rate, a batch size)."""
    if integer and not space.finite:
        raise SearchSpaceError(f"{name}: a whole-number setting needs choice:... or grid:..., not {space.kind}")
    for v in space.values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and int(v) != v):
            raise SearchSpaceError(f"{name}: {v!r} is not a {'whole number' if integer else 'number'}")
        if positive and v <= 0:
            raise SearchSpaceError(f"{name}: {v!r} must be > 0")
    if positive and space.low is not None and space.low <= 0:
        raise SearchSpaceError(f"{name}: the range must be > 0")
    if integer:
        return Space(space.kind, values=tuple(int(v) for v in space.values))
    return Space(space.kind, low=space.low, high=space.high, values=tuple(float(v) for v in space.values))


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def _draw(space: Space, rng: np.random.Generator):
    if space.kind == "loguniform":
        return _round(math.exp(rng.uniform(math.log(space.low), math.log(space.high))))
    if space.kind == "uniform":
        return _round(rng.uniform(space.low, space.high))
    return space.values[int(rng.integers(len(space.values)))]


def sample_points(spaces: dict[str, Space], samples: int, seed: int) -> list[dict]:
    """The sweep's points: every combination of the grid spaces, times `samples` draws of the
    others (Tune's meaning of grid + num_samples), with repeated points dropped.

    When every non-grid space is a finite choice, the draws are made without replacement, so
    `choice:a,b,c` with 3 samples tries each value once.
    """
    if samples < 1:
        raise SearchSpaceError(f"samples must be >= 1, not {samples}")
    rng = np.random.default_rng(seed)
    grid = {k: s for k, s in spaces.items() if s.kind == "grid"}
    drawn = {k: s for k, s in spaces.items() if s.kind != "grid"}
    if drawn and all(s.finite for s in drawn.values()):
        combos = list(itertools.product(*(s.values for s in drawn.values())))
        order = rng.permutation(len(combos))[:samples]
        draws = [dict(zip(drawn, combos[i])) for i in order]
    else:
        draws = [{k: _draw(s, rng) for k, s in drawn.items()} for _ in range(samples if drawn else 1)]
    points, seen = [], set()
    for combo in itertools.product(*(s.values for s in grid.values())):
        for draw in draws:
            point = {**dict(zip(grid, combo)), **draw}
            point = {k: point[k] for k in spaces}               # the caller's order
            ident = tuple(sorted(point.items()))
            if ident not in seen:
                seen.add(ident)
                points.append(point)
    return points
