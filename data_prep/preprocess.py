"""One image -> one prepared row: grayscale, CLAHE, face box, square crop, 68 normalised points.

This follows the paper (Section III-A): CLAHE on the grayscale image,
detection on it (3 channels, 300x300 for the SSD), a square box clipped to the image, a bilinear
resize to crop_size, landmarks in crop coordinates divided by the crop size.

The paper scored every test image, so a failed step does not drop an image: a detector miss
crops the largest centred square (settings.no_face, flagged in face_fallback / face_source), and
a landmark failure keeps the row with landmarks_ok false and NaN points. Only an image that
cannot be read at all is a RejectError.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from partfer.data_prep.annotators.base import Annotator
from partfer.data_prep.detectors.base import Detector
from partfer.data_prep.errors import RejectError
from partfer.data_prep.face_crop import Detection, FaceCrop
from partfer.data_prep.file_names import name_hex, name_text
from partfer.data_prep.ibug68 import N_POINTS
from partfer.data_prep.image_io import load_grayscale
from partfer.data_prep.readers.base import Record
from partfer.data_prep.schema import COLUMNS, FALLBACK_SOURCE
from partfer.data_prep.settings import PrepSettings

# Points this far outside the crop (fraction of its side) mean the annotator failed, not that
# the chin sticks out a little: such images are rejected rather than clipped into nonsense.
MAX_OUTSIDE = 0.25


@functools.lru_cache(maxsize=8)
def _clahe(clip: float, tile: int) -> cv2.CLAHE:
    return cv2.createCLAHE(clipLimit=clip, tileGridSize=(tile, tile))


def apply_clahe(gray: np.ndarray, clip: float = 2.0, tile: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a uint8 grayscale image."""
    return _clahe(float(clip), int(tile)).apply(gray)


def square_box(box: tuple[float, float, float, float], margin: float, width: int, height: int
               ) -> tuple[int, int, int, int]:
    """Square around the box centre (side = max(w, h) * (1 + margin)), clipped to the image.

    Clipping can make a box at the border non-square; the resize then stretches it slightly,
    which beats a crop with padding or an empty crop (SSD boxes may lie partly outside the image).
    """
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1.0 + margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(np.clip(round(cx - side / 2), 0, width))
    top = int(np.clip(round(cy - side / 2), 0, height))
    right = int(np.clip(round(cx + side / 2), 0, width))
    bottom = int(np.clip(round(cy + side / 2), 0, height))
    if right - left < 2 or bottom - top < 2:
        raise RejectError(f"face box {tuple(round(v, 1) for v in box)} lies outside the "
                          f"{width}x{height} image")
    return left, top, right, bottom


def crop_face(image: np.ndarray, detection: Detection, settings: PrepSettings) -> FaceCrop:
    """Cut the square face box out of the (CLAHE) image and resize it to crop_size, bilinear."""
    height, width = image.shape
    box = square_box(detection.box, settings.box_margin, width, height)
    x0, y0, x1, y1 = box
    crop = cv2.resize(image[y0:y1, x0:x1], (settings.crop_size, settings.crop_size),
                      interpolation=cv2.INTER_LINEAR)
    return FaceCrop(source=image, box=box, crop=crop, detection=detection)


def normalise_points(points: np.ndarray, crop_size: int) -> tuple[np.ndarray, int]:
    """Crop-pixel points -> [0, 1] crop coordinates, and how many had to be clipped into [0, 1]."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (N_POINTS, 2) or not np.all(np.isfinite(points)):
        raise RejectError(f"annotator returned invalid landmarks (shape {points.shape})")
    unit = points / crop_size
    if np.any(unit < -MAX_OUTSIDE) or np.any(unit > 1 + MAX_OUTSIDE):
        raise RejectError("landmarks fall far outside the face crop (annotator failure)")
    clipped = np.clip(unit, 0.0, 1.0)
    n_clipped = int(np.count_nonzero(np.any(clipped != unit, axis=1)))
    return clipped.astype(np.float32), n_clipped


def center_square(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest square centred in the image (x0, y0, x1, y1, half-open)."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def fallback_crop(image: np.ndarray, settings: PrepSettings) -> FaceCrop:
    """The crop of an image whose face the detector missed: its largest centred square, resized
    like any crop; score 0."""
    height, width = image.shape
    box = center_square(width, height)
    x0, y0, x1, y1 = box
    crop = cv2.resize(image[y0:y1, x0:x1], (settings.crop_size, settings.crop_size),
                      interpolation=cv2.INTER_LINEAR)
    return FaceCrop(source=image, box=box, crop=crop, detection=Detection(tuple(map(float, box)), 0.0),
                    fallback=True)


def locate_face(record: Record, detector: Detector, settings: PrepSettings) -> FaceCrop:
    """Load, equalise, detect and crop (the fallback crop when the detector finds no face).

    RejectError for unreadable files, and for detector misses under no_face="reject".
    """
    gray = load_grayscale(record.path)
    equalised = apply_clahe(gray, settings.clahe_clip, settings.clahe_tile)
    detection = detector.detect(equalised)
    miss = f"no face found by {detector.name}"
    if detection is not None:
        try:
            return crop_face(equalised, detection, settings)
        except RejectError as err:        # a box outside the image is no face of it
            miss = str(err)
    if settings.no_face == "reject":
        raise RejectError(miss)
    return fallback_crop(equalised, settings)


def annotate_points(face: FaceCrop, record: Record, annotator: Annotator, crop_size: int
                    ) -> tuple[np.ndarray, int, str | None]:
    """(normalised points, points clipped, None), or (NaN points, 0, reason) when the annotator
    fails: the image stays a classification sample, it only stops being a landmark target."""
    try:
        points, n_clipped = normalise_points(annotator.annotate(face, record), crop_size)
        return points, n_clipped, None
    except (RejectError, cv2.error) as err:
        reason = name_text(" ".join(str(err).split()))     # it may name a file that is not UTF-8
        if isinstance(err, cv2.error):
            reason = f"OpenCV error: {reason}"
        return np.full((N_POINTS, 2), np.nan, np.float32), 0, reason


def prepare_row(record: Record, detector: Detector, annotator: Annotator, settings: PrepSettings,
                dataset: str = "") -> tuple[dict, int]:
    """(row of data_prep.schema, number of points clipped into the crop)."""
    face = locate_face(record, detector, settings)
    points, n_clipped, landmark_error = annotate_points(face, record, annotator, settings.crop_size)
    row = {
        # names from the file system may not be UTF-8: Parquet holds their text, and their bytes
        "sample_id": name_text(record.rel_path),
        "source_path": name_text(record.rel_path),
        "source_path_hex": name_hex(record.rel_path) or None,
        "dataset": dataset,
        "split": record.split,
        "subject": name_text(record.subject),
        "group": name_text(record.group),
        "label": record.label,
        "image": face.crop.tobytes(),
        "height": int(face.crop.shape[0]),
        "width": int(face.crop.shape[1]),
        "landmarks": points.reshape(-1).tolist(),
        "landmarks_ok": landmark_error is None,
        "landmarks_error": landmark_error,
        "face_box": [float(v) for v in face.box],
        "face_fallback": face.fallback,
        "face_source": FALLBACK_SOURCE if face.fallback else detector.name,
        "detector": detector.name,
        "detector_score": float(face.detection.score),
        "annotator": annotator.name,
    }
    assert row.keys() == COLUMNS.keys(), "prepare_row out of step with data_prep.schema"
    return row, n_clipped


def prepare_record(record: Record, detector: Detector, annotator: Annotator, settings: PrepSettings,
                   dataset: str = "") -> dict:
    """One row of data_prep.schema.SCHEMA for a record; RejectError(reason) for an image that
    cannot be had (unreadable; no face under no_face="reject")."""
    return prepare_row(record, detector, annotator, settings, dataset)[0]
