"""Text files of 68 landmark points, one "x y" line per point (source-image pixels)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from partfer import atomicio
from partfer.data_prep.ibug68 import N_POINTS


def read_points(path: str | os.PathLike) -> np.ndarray:
    """(68, 2) float64 points; ValueError naming the file when it is not 68 lines of two numbers."""
    try:
        rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
        points = np.array(rows, dtype=np.float64)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read landmark file {path}: {err}") from None
    if points.shape != (N_POINTS, 2) or not np.all(np.isfinite(points)):
        raise ValueError(f"landmark file {path} must hold {N_POINTS} lines 'x y', found shape {points.shape}")
    return points


def write_points(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write atomically (atomicio)."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (N_POINTS, 2):
        raise ValueError(f"expected ({N_POINTS}, 2) points, got {points.shape}")
    atomicio.write_text(path, "".join(f"{x:.3f} {y:.3f}\n" for x, y in points))
