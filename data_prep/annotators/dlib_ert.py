"""dlib's ERT 68-point shape predictor: the paper's landmark ground truth.

The predictor is sensitive to its input box: an SSD box makes it shift the points, so it is given
a HOG box re-detected inside the crop (the box type it was trained with), or the whole crop when
HOG finds nothing. A detector-miss (fallback) crop gets landmarks only when HOG finds a face in it.
"""
from __future__ import annotations

import dlib
import numpy as np

from partfer.data_prep.annotators.base import register_annotator
from partfer.data_prep.errors import RejectError
from partfer.data_prep.face_crop import FaceCrop
from partfer.data_prep.model_files import dlib_68_file
from partfer.data_prep.readers.base import Record


@register_annotator(
    "dlib",
    "dlib ERT 68-point predictor (iBUG 300-W, research use) on the crop, boxed by HOG "
    "re-detection or the whole crop. Fast (a few ms); weaker on large poses.",
)
class DlibERT:
    name = "dlib"

    def __init__(self) -> None:
        self.predictor = dlib.shape_predictor(dlib_68_file())
        self.hog = dlib.get_frontal_face_detector()

    def face_box(self, crop: np.ndarray) -> dlib.rectangle:
        """The HOG box inside the crop, or the whole crop when HOG finds no face."""
        # A face fills the crop, so it is far above HOG's 80 px minimum: no upsampling needed.
        rects, scores, _ = self.hog.run(crop, 0, 0.0)
        if len(rects):
            return rects[int(np.argmax(scores))]
        height, width = crop.shape
        return dlib.rectangle(0, 0, width - 1, height - 1)

    def annotate(self, face: FaceCrop, record: Record) -> np.ndarray:
        crop = np.ascontiguousarray(face.crop)
        if face.fallback and not len(self.hog.run(crop, 0, 0.0)[0]):
            # The whole-crop box assumes the crop is a face; a fallback crop is only a guess.
            raise RejectError("no face in the no-face fallback crop (HOG found none): dlib not run")
        box = self.face_box(crop)
        shape = self.predictor(crop, box)
        return np.array([[part.x, part.y] for part in shape.parts()], dtype=np.float64)
