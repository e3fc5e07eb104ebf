"""`partfer predict --details`: the 68 facial landmarks of every classified face, in image pixels.

The model's own annotator (its training data's `annotator` setting) places them on each face crop.
An annotator that only reads a data set's point files (`dataset`) has nothing to read at prediction
time: dlib's ERT predictor, the paper's landmark ground truth, stands in for it. A face the
annotator fails on keeps its prediction and gets empty landmark columns.
"""
from __future__ import annotations

import cv2
import numpy as np

from partfer.data_prep.annotators import load_annotator
from partfer.data_prep.errors import ModelFileError, RejectError
from partfer.data_prep.face_crop import FaceCrop
from partfer.data_prep.ibug68 import N_POINTS
from partfer.data_prep.readers.base import Record
from partfer.data_prep.settings import PrepSettings

FILE_ONLY_ANNOTATORS = {"dataset": "dlib"}     # annotators that need the data set's files -> stand-in


def landmark_columns() -> list[str]:
    """lm00_x, lm00_y, ..., lm67_x, lm67_y: the iBUG 68 points in order."""
    return [f"lm{i:02d}_{axis}" for i in range(N_POINTS) for axis in ("x", "y")]


def crop_to_source(face: FaceCrop, points: np.ndarray) -> np.ndarray:
    """Crop-pixel points -> source-pixel points (the inverse of FaceCrop.source_to_crop)."""
    x0, y0, x1, y1 = face.box
    scale = np.array([face.crop.shape[1] / (x1 - x0), face.crop.shape[0] / (y1 - y0)])
    return (np.asarray(points, dtype=np.float64) + 0.5) / scale - 0.5 + [x0, y0]


class Landmarker:
    """Places 68 landmarks on face crops with the model's annotator (or its stand-in)."""

    def __init__(self, settings: PrepSettings):
        self.name = FILE_ONLY_ANNOTATORS.get(settings.annotator, settings.annotator)
        self.note = ""
        try:
            self.annotator = load_annotator(self.name, settings)
        except (ModelFileError, ImportError, KeyError, ValueError) as err:
            self.annotator = None
            self.note = f"no landmarks: the {self.name} annotator cannot load ({err})"
        if self.annotator is not None and self.name != settings.annotator:
            self.note = (f"landmarks by {self.name} (the model's annotator {settings.annotator!r} reads a data "
                         f"set's point files, which predict has not)")

    def points(self, face: FaceCrop, name: str) -> np.ndarray | None:
        """(68, 2) float32 points in source pixels, or None when the annotator cannot place them."""
        if self.annotator is None:
            return None
        record = Record(path=name, rel_path=name, label="", subject="", group="", split="all")
        try:
            points = np.asarray(self.annotator.annotate(face, record), dtype=np.float64)
        except (RejectError, cv2.error):
            return None
        if points.shape != (N_POINTS, 2) or not np.isfinite(points).all():
            return None
        return crop_to_source(face, points).astype(np.float32)
