"""Preprocessing settings: everything that changes the prepared pixels or points.

All of it goes into the prepared directory's content hash, so changing any value prepares anew
instead of silently reusing data made with other settings.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

NO_FACE_CHOICES = ("center_square", "reject")
CROP_SIZE = 160                 # the paper's crop side (data_prep.schema's images, results' landmark pixels)
# The crop side: at least 16 px; at most 1024, four times more than any face data set here holds,
# so that a mistyped or hostile value (a config, a model.json) cannot ask for a gigapixel crop.
CROP_SIZE_MIN = 16
CROP_SIZE_MAX = 1024
_KINDS = {"detector": str, "annotator": str, "crop_size": int, "clahe_clip": float, "clahe_tile": int,
          "ssd_confidence": float, "box_margin": float, "device": str, "no_face": str}


def _of_kind(value, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


@dataclass(frozen=True)
class PrepSettings:
    detector: str = "ssd"           # ssd | hog | none (see data_prep.detectors)
    annotator: str = "dlib"         # dlib | fan | dataset (see data_prep.annotators)
    crop_size: int = CROP_SIZE      # paper: 160x160
    clahe_clip: float = 2.0         # paper notebook: CLAHE clip limit 2.0 ...
    clahe_tile: int = 8             # ... on 8x8 tiles
    ssd_confidence: float = 0.5     # lowest SSD score accepted as a face
    box_margin: float = 0.0         # square side = max(w, h) * (1 + margin)
    device: str = "cpu"             # torch device for the FAN annotator
    # A detector miss: crop the largest centred square and flag the row (the paper scored every
    # test image), or make the image a reject.
    no_face: str = "center_square"  # center_square | reject

    def __post_init__(self) -> None:
        for name, kind in _KINDS.items():
            value = getattr(self, name)
            if not _of_kind(value, kind):
                want = {str: "text", int: "a whole number", float: "a number"}[kind]
                raise ValueError(f"{name} must be {want}, got {value!r}")
        if not CROP_SIZE_MIN <= self.crop_size <= CROP_SIZE_MAX:
            raise ValueError(f"crop_size must be in [{CROP_SIZE_MIN}, {CROP_SIZE_MAX}], got {self.crop_size}")
        if self.clahe_clip <= 0 or self.clahe_tile < 1:
            raise ValueError(f"CLAHE needs clip > 0 and tile >= 1, got {self.clahe_clip}, {self.clahe_tile}")
        if not 0.0 < self.ssd_confidence <= 1.0:
            raise ValueError(f"ssd_confidence must be in (0, 1], got {self.ssd_confidence}")
        if self.no_face not in NO_FACE_CHOICES:
            raise ValueError(f"no_face must be one of {', '.join(NO_FACE_CHOICES)}, got {self.no_face!r}")
        if self.box_margin <= -1.0:
            raise ValueError(f"box_margin must be > -1, got {self.box_margin}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PrepSettings":
        known = {f.name for f in fields(cls)}
        if not isinstance(values, dict):
            raise ValueError(f"preprocessing settings must be a mapping, not {type(values).__name__}")
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown preprocessing settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)
