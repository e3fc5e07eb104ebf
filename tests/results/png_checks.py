"""Reading the report's PNG figures back as pixels, so a figure test can fail on a wrong drawing
(wrong size, blank, missing panels, missing colours), not only on a missing file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.image import imread

DPI = 100               # atomicio.save_figure's resolution: a figure of w x h inches is 100w x 100h px
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path: Path) -> np.ndarray:
    """(H, W, 3) floats in [0, 1] of a PNG file (alpha dropped; the figures are opaque)."""
    data = Path(path).read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4), pixels.shape
    return pixels[..., :3]


def assert_drawn(pixels: np.ndarray, figsize: tuple[float, float]) -> None:
    """The size figsize x DPI gives, and not a blank (single-colour or nearly white) canvas."""
    width, height = figsize
    assert pixels.shape[:2] == (round(height * DPI), round(width * DPI)), pixels.shape
    assert pixels.std() > 0.05, "blank figure"
    assert (pixels.min(axis=2) < 0.5).mean() > 0.01, "almost nothing dark was drawn"


def panel_grid(pixels: np.ndarray, min_side: int = 60) -> tuple[int, int]:
    """(rows, columns) of image panels: the most runs of at least min_side non-white pixels met by
    one vertical and by one horizontal line (text lines make only short runs)."""
    ink = pixels.min(axis=2) < 0.95

    def most_runs(lines: np.ndarray) -> int:
        best = 0
        for line in lines:
            edges = np.flatnonzero(np.diff(np.concatenate(([0], line.astype(np.int8), [0]))))
            lengths = edges[1::2] - edges[::2]
            best = max(best, int((lengths >= min_side).sum()))
        return best
    return most_runs(ink.T), most_runs(ink)


def colour_pixels(pixels: np.ndarray, colour, tolerance: float = 2 / 255) -> int:
    """How many pixels have this colour (a matplotlib colour name or RGB), to 8-bit rounding."""
    target = np.asarray(to_rgb(colour) if isinstance(colour, str) else colour[:3])
    return int((np.abs(pixels - target) <= tolerance + 1e-6).all(axis=2).sum())


def chromatic_share(pixels: np.ndarray, min_chroma: float = 0.15) -> float:
    """The share of pixels that are clearly coloured (not grey, black or white)."""
    return float((pixels.max(axis=2) - pixels.min(axis=2) > min_chroma).mean())
