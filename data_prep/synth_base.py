"""What every synthetic layout writer shares (data_prep.synth, synth_ckplus, synth_sfew): the
request it gets, what it reports, a subject's drawing style, and how it writes files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from partfer.data_prep.face_drawing import FaceStyle
from partfer.data_prep.face_geometry import Identity


@dataclass(frozen=True)
class SynthRequest:
    """What to generate, checked by `synthesize`; every layout writer gets one."""
    subjects: int
    per_class: int          # JAFFE/SFEW: images per subject and class; CK+: sequences per subject and expression
    seed: int
    size: int
    classes: tuple[str, ...]
    frames: int = 6         # CK+ only: frames per sequence, neutral onset to peak


@dataclass(frozen=True)
class Written:
    n_images: int
    classes: list[str]      # labels the set's reader will find, canonical order
    subjects: list[str]


def style_of(ident: Identity) -> FaceStyle:
    return FaceStyle(skin=ident.skin, hair=ident.hair, lips=ident.lips, brow_thickness=ident.brow_thickness)


def write_bytes_file(path: Path, data: bytes) -> None:
    """A file of the data set being built (folders created as needed). Plain writes: the whole
    folder is built under a temporary name and published at once (synthesize)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_image_file(path: Path, image: np.ndarray) -> None:
    """Encode by the file suffix (PNG, TIFF ...) and write atomically."""
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise OSError(f"OpenCV could not encode {path}")
    write_bytes_file(path, encoded.tobytes())
