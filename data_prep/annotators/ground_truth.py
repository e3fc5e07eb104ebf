"""The data set's own 68 points (CK+ AAM landmarks, synthetic faces), mapped into the crop."""
from __future__ import annotations

import numpy as np

from partfer.data_prep.annotators.base import register_annotator
from partfer.data_prep.errors import RejectError
from partfer.data_prep.face_crop import FaceCrop
from partfer.data_prep.landmark_files import read_points
from partfer.data_prep.readers.base import Record


@register_annotator(
    "dataset",
    "Ground-truth points shipped with the data set (68 'x y' lines in source pixels per image); "
    "exact where available, a reject where an image has no point file.",
)
class GroundTruth:
    name = "dataset"

    def annotate(self, face: FaceCrop, record: Record) -> np.ndarray:
        if not record.landmarks_path:
            raise RejectError(f"no ground-truth landmark file (for {record.rel_path})")
        try:
            points = read_points(record.landmarks_path)
        except ValueError as err:
            raise RejectError(str(err)) from None
        return face.source_to_crop(points)
