"""A face box, the square crop cut from it, and the mapping from source pixels into the crop.

Detectors, annotators and the preprocessing all speak in these terms, so the one coordinate
convention (pixel centres at integers, as OpenCV's bilinear resize assumes) lives here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detection:
    """A detector's face: box x0, y0, x1, y1 in source pixels (may extend past the image)."""
    box: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True)
class FaceCrop:
    """The crop that goes into the prepared data, and where it came from."""
    source: np.ndarray                  # uint8 (H, W) grayscale source after CLAHE
    box: tuple[int, int, int, int]      # x0, y0, x1, y1: integer, half-open, inside the source
    crop: np.ndarray                    # uint8 (crop_size, crop_size)
    detection: Detection
    fallback: bool = False              # the detector found no face: a stated fallback crop

    @property
    def crop_size(self) -> int:
        return int(self.crop.shape[0])

    def source_to_crop(self, points: np.ndarray) -> np.ndarray:
        """Source-pixel points -> crop-pixel points (the same mapping cv2.resize applies)."""
        x0, y0, x1, y1 = self.box
        scale = np.array([self.crop.shape[1] / (x1 - x0), self.crop.shape[0] / (y1 - y0)])
        return (np.asarray(points, dtype=np.float64) - [x0, y0] + 0.5) * scale - 0.5
