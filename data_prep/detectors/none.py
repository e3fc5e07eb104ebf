"""No detection: the whole image is the face (for sets that are already face crops)."""
from __future__ import annotations

import numpy as np

from partfer.data_prep.detectors.base import register_detector
from partfer.data_prep.face_crop import Detection


@register_detector(
    "none",
    "No detector: the whole image is the face box (score 1.0). For data sets of already-cropped "
    "or aligned faces (CK+48, aligned SFEW, FER2013, synthetic faces), where the SSD finds few faces.",
)
class WholeImage:
    name = "none"

    def detect(self, image: np.ndarray) -> Detection | None:
        height, width = image.shape[:2]
        return Detection((0.0, 0.0, float(width), float(height)), 1.0)

    def detect_all(self, image: np.ndarray) -> list[Detection]:
        """One face: the whole image (an already-cropped face is one face)."""
        return [self.detect(image)]
