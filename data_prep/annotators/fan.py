"""face-alignment's 2D-FAN (optional): better than dlib on large poses, the paper's SFEW weakness.

The package and its weights are optional. The weights are never fetched from here: the run
checks for the file first and, when it is missing, says which file and where to put it, so a
cluster node without internet fails at once instead of hanging on a download.
"""
from __future__ import annotations

import os
from urllib.parse import urlparse

import numpy as np

from partfer.data_prep.annotators.base import register_annotator
from partfer.data_prep.errors import ModelFileError, RejectError
from partfer.data_prep.face_crop import FaceCrop
from partfer.data_prep.readers.base import Record

FAN_MODEL = "2DFAN-4"


def fan_weights() -> tuple[str, str]:
    """(expected local path, download URL) of the 2D-FAN weights; ModelFileError without the package."""
    try:
        from face_alignment.api import models_urls
        from torch.hub import get_dir
    except ImportError as err:
        raise ModelFileError(f"the 'fan' annotator needs the face-alignment package ({err}); install it "
                             f"with `pip install --no-deps face-alignment numba` (plain pip pulls OpenCV 5)") from None
    url = models_urls[FAN_MODEL]
    # face_alignment caches downloads in torch.hub's folder: $TORCH_HOME/hub/checkpoints/<file>.
    return os.path.join(get_dir(), "checkpoints", os.path.basename(urlparse(url).path)), url


@register_annotator(
    "fan",
    "face-alignment 2D-FAN (optional package; weights in $TORCH_HOME/hub/checkpoints). Robust to "
    "large poses; ~0.3-0.6 s per face on CPU. Runs on the source image with the detector's box.",
    uses=("device",),
)
class FAN:
    name = "fan"

    def __init__(self, device: str = "cpu") -> None:
        path, url = fan_weights()
        if not os.path.isfile(path):
            raise ModelFileError(f"FAN weights {os.path.basename(path)} not found at {path}; download "
                                 f"{url} and put it there (or point TORCH_HOME at a folder holding "
                                 f"hub/checkpoints/{os.path.basename(path)})")
        from face_alignment import FaceAlignment, LandmarksType

        # compile=False: torch.compile costs minutes on CPU for no gain here; 'folder' detector:
        # the boxes come from our detector, so FAN's own detector is never loaded.
        self.model = FaceAlignment(LandmarksType.TWO_D, device=device, face_detector="folder",
                                   compile=False)

    def annotate(self, face: FaceCrop, record: Record) -> np.ndarray:
        if face.fallback:      # FAN fits points inside the box it is given, face or not
            raise RejectError("no face box for FAN: the crop is the no-face fallback")
        box = np.array(face.box, dtype=np.float32)
        found = self.model.get_landmarks_from_image(face.source, detected_faces=[box])
        if not found:
            raise RejectError(f"FAN found no landmarks in {record.rel_path}")
        return face.source_to_crop(np.asarray(found[0], dtype=np.float64)[:, :2])
