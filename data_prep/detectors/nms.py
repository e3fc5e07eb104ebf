"""Greedy non-maximum suppression of face boxes (pure numpy).

A detector may report one face several times with slightly shifted boxes; for multi-face
prediction every face must appear once, so overlapping boxes keep only their most confident one.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from partfer.data_prep.face_crop import Detection


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (4,) box with (N, 4) boxes (x0, y0, x1, y1, half-open)."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def non_max_suppression(detections: Sequence[Detection], iou_threshold: float) -> list[Detection]:
    """Most confident first; a box overlapping an already kept one by more than the threshold is dropped."""
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    order = sorted(range(len(detections)), key=lambda i: -detections[i].score)   # stable: ties keep order
    kept: list[Detection] = []
    for i in order:
        candidate = detections[i]
        if kept:
            overlap = box_iou(np.asarray(candidate.box, dtype=np.float64),
                              np.asarray([k.box for k in kept], dtype=np.float64))
            if np.any(overlap > iou_threshold):
                continue
        kept.append(candidate)
    return kept
