"""dlib's HOG + linear SVM frontal face detector."""
from __future__ import annotations

import dlib
import numpy as np

from data_prep.detectors.base import register_detector
from data_prep.face_crop import Detection


@register_detector(
    "hog",
    "dlib HOG + linear SVM frontal detector. CPU-cheap, no model file; frontal faces of 80 px or "
    "more (smaller ones after one upsampling); misses turned faces. Score is the SVM margin, not a "
    "probability.",
)
class HOGDetector:
    name = "hog"

    def __init__(self, upsample: int = 1) -> None:
        self.detector = dlib.get_frontal_face_detector()
        self.upsample = upsample

    def detect(self, image: np.ndarray) -> Detection | None:
        rects, scores, _ = self.detector.run(np.ascontiguousarray(image), self.upsample, 0.0)
        if len(rects) == 0:
            return None
        best = int(np.argmax(scores))
        r = rects[best]
        # dlib rectangles are inclusive; +1 makes them half-open like every other box here.
        return Detection((float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1)),
                         float(scores[best]))
