"""dlib's HOG + linear SVM frontal face detector."""
from __future__ import annotations

import dlib
import numpy as np

from partfer.data_prep.detectors.base import register_detector
from partfer.data_prep.face_crop import Detection


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

    def detect_all(self, image: np.ndarray) -> list[Detection]:
        """Every face the SVM accepts (margin >= 0), most confident first.

        dlib already suppresses overlapping windows inside `run`, so each face comes once.
        """
        rects, scores, _ = self.detector.run(np.ascontiguousarray(image), self.upsample, 0.0)
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        # dlib rectangles are inclusive; +1 makes them half-open like every other box here.
        return [Detection((float(rects[i].left()), float(rects[i].top()),
                           float(rects[i].right() + 1), float(rects[i].bottom() + 1)), float(scores[i]))
                for i in order]

    def detect(self, image: np.ndarray) -> Detection | None:
        """The most confident face (the first of detect_all), or None."""
        faces = self.detect_all(image)
        return faces[0] if faces else None
