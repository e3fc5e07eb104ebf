"""One PNG per face: the face crop, then each sub-network's Grad-CAM heat map over it, then their
union (the paper's ensemble map, Section IV-C), each panel titled with its name and predicted class.
"""
from __future__ import annotations

import cv2
import numpy as np

MIN_PANEL = 160          # panels are drawn at least this large so their titles stay legible
MAX_COLUMNS = 7        # the crop, five members and their union fit one row
ALPHA = 0.45             # weight of the heat map over the face


def overlay(crop: np.ndarray, heat: np.ndarray, size: int) -> np.ndarray:
    """BGR panel: the grayscale crop with a JET-coloured heat map in [0, 1] blended over it."""
    face = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
    face = cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)
    heat = cv2.resize(np.clip(heat, 0.0, 1.0).astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(coloured, ALPHA, face, 1.0 - ALPHA, 0.0)


FONT = cv2.FONT_HERSHEY_SIMPLEX
PAD = 4                  # pixels left free around a title


def _width(text: str, scale: float) -> int:
    return cv2.getTextSize(text, FONT, scale, 1)[0][0]


def _split(title: str) -> list[str]:
    """The title in two lines at the space nearest its middle (one line when it has no space)."""
    spaces = [i for i, ch in enumerate(title) if ch == " "]
    if not spaces:
        return [title]
    cut = min(spaces, key=lambda i: abs(i - len(title) / 2))
    return [title[:cut], title[cut + 1:]]


def title_layout(titles: list[str], size: int) -> tuple[list[list[str]], float]:
    """Each title's lines and one font scale for all, so that every line fits a panel `size`
    wide: one line at the panel's own scale when it fits, else two, else a smaller font."""
    room = size - 2 * PAD
    scale = size / 360.0
    lines = [[t] if _width(t, scale) <= room else _split(t) for t in titles]
    widest = max((_width(line, scale) for ls in lines for line in ls), default=0)
    if widest > room:
        scale *= room / widest
    return lines, scale


def _titled(panel: np.ndarray, lines: list[str], scale: float, n_lines: int) -> np.ndarray:
    size = panel.shape[1]
    (_, ascent), descent = cv2.getTextSize("Ag", FONT, scale, 1)
    line_height = ascent + descent + 2
    bar = np.zeros((max(14, n_lines * line_height + 2 * PAD), size, 3), np.uint8)
    for k, line in enumerate(lines):
        cv2.putText(bar, line, (PAD, PAD + k * line_height + ascent + 1), FONT, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return np.vstack([bar, panel])


def gradcam_sheet(crop: np.ndarray, maps: np.ndarray, titles: list[str], union_map: np.ndarray,
                  union_title: str) -> np.ndarray:
    """crop (S, S) uint8, maps (M, H, W) and union_map (H, W) in [0, 1] -> a BGR image: the crop,
    M overlays and the union overlay, in rows of at most MAX_COLUMNS panels, each titled in full."""
    if len(maps) != len(titles):
        raise ValueError(f"{len(maps)} maps but {len(titles)} titles")
    size = max(MIN_PANEL, crop.shape[0])
    plain = cv2.cvtColor(cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR), cv2.COLOR_GRAY2BGR)
    images = [plain, *(overlay(crop, m, size) for m in maps), overlay(crop, union_map, size)]
    lines, scale = title_layout(["face", *titles, union_title], size)
    n_lines = max(len(ls) for ls in lines)
    panels = [_titled(image, ls, scale, n_lines) for image, ls in zip(images, lines)]
    columns = min(MAX_COLUMNS, len(panels))
    blank = np.zeros_like(panels[0])
    rows = [panels[i:i + columns] + [blank] * (columns - len(panels[i:i + columns]))
            for i in range(0, len(panels), columns)]
    return np.vstack([np.hstack(r) for r in rows])


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()
