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


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    size = panel.shape[1]
    scale = size / 400.0
    bar = np.zeros((max(14, int(size * 0.12)), size, 3), np.uint8)
    cv2.putText(bar, title, (3, bar.shape[0] - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)
    return np.vstack([bar, panel])


def gradcam_sheet(crop: np.ndarray, maps: np.ndarray, titles: list[str], union_map: np.ndarray,
                  union_title: str) -> np.ndarray:
    """crop (S, S) uint8, maps (M, H, W) and union_map (H, W) in [0, 1] -> a BGR image: the crop,
    M overlays and the union overlay, in rows of at most MAX_COLUMNS panels."""
    if len(maps) != len(titles):
        raise ValueError(f"{len(maps)} maps but {len(titles)} titles")
    size = max(MIN_PANEL, crop.shape[0])
    plain = cv2.cvtColor(cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR), cv2.COLOR_GRAY2BGR)
    panels = [_titled(plain, "face")]
    panels += [_titled(overlay(crop, m, size), t) for m, t in zip(maps, titles)]
    panels.append(_titled(overlay(crop, union_map, size), union_title))
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
