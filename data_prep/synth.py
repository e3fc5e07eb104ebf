"""Synthetic labelled face data sets, written in a real data set's layout with true landmarks.

Tests and demos need data whose labels are learnable and whose landmarks are exact, without the
licensed data sets. Each subject gets an identity, each class an expression deformation, each
image a random intensity, pose, illumination and noise. The layout writer decides only names and
folders, so the CK+ and SFEW layouts are one more writer each.
"""
from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from data_prep import labels
from data_prep.face_drawing import FaceStyle, background, draw_face, photograph
from data_prep.face_geometry import (
    Identity, expression_cues, expression_points, neutral_points, pose_points, random_identity,
    random_pose,
)
from data_prep.landmark_files import write_points
from data_prep.readers.base import LANDMARKS_DIR

__all__ = ["SynthSummary", "SynthImage", "synthesize", "generate", "draw_face", "subject_codes",
           "render_image", "known_synth_layouts"]

JAFFE_SUBJECTS = ("KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM")
JAFFE_CODES = {"anger": "AN", "disgust": "DI", "fear": "FE", "happiness": "HA", "neutral": "NE",
               "sadness": "SA", "surprise": "SU", "contempt": "CO"}
JAFFE_CLASSES = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")


@dataclass
class SynthSummary:
    out_dir: str
    layout: str
    n_images: int
    classes: list[str]
    subjects: list[str]


@dataclass(frozen=True)
class SynthImage:
    subject: str
    label: str
    index: int              # 1..per_class within (subject, label)
    image: np.ndarray       # uint8 (size, size)
    points: np.ndarray      # (68, 2) true landmarks in pixels, after pose


def subject_codes(n: int) -> list[str]:
    """JAFFE's ten subject codes first, then further two-letter codes that JAFFE does not use."""
    extra = (a + b for a in string.ascii_uppercase for b in string.ascii_uppercase
             if a + b not in JAFFE_SUBJECTS)
    codes = list(JAFFE_SUBJECTS[:n])
    while len(codes) < n:
        codes.append(next(extra))
    return codes


def style_of(ident: Identity) -> FaceStyle:
    return FaceStyle(skin=ident.skin, hair=ident.hair, lips=ident.lips, brow_thickness=ident.brow_thickness)


def render_image(ident: Identity, expression: str, rng: np.random.Generator, size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One photograph-like image of a person showing an expression, and its true 68 points."""
    intensity = rng.uniform(0.7, 1.0) if expression != "neutral" else 0.0
    face = expression_points(neutral_points(ident), expression, intensity)
    points = pose_points(face, random_pose(rng, size), size)
    canvas = background(size, rng)
    drawn = draw_face(points, size, style_of(ident), expression_cues(expression, intensity), canvas)
    return photograph(drawn, rng), points


def generate(subjects: int, per_class: int, seed: int, size: int, classes: tuple[str, ...]
             ) -> Iterator[SynthImage]:
    """Images in a fixed order (subject, class, index); each from its own seed, so any subset
    of classes or subjects reproduces the same images."""
    for s, code in enumerate(subject_codes(subjects)):
        ident = random_identity(np.random.default_rng([seed, 0, s]))
        for label in classes:
            class_id = labels.CANONICAL.index(label)
            for index in range(1, per_class + 1):
                rng = np.random.default_rng([seed, 1, s, class_id, index])
                image, points = render_image(ident, label, rng, size)
                yield SynthImage(code, label, index, image, points)


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_image(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise OSError(f"OpenCV could not encode {path}")
    _write_bytes(path, encoded.tobytes())


def _write_jaffe(images: Iterator[SynthImage], out: Path) -> int:
    """JAFFE: flat `KA.AN1.39.tiff`, id a running number; points in landmarks/<stem>.txt."""
    (out / LANDMARKS_DIR).mkdir(parents=True, exist_ok=True)
    n = 0
    for n, item in enumerate(images, start=1):
        stem = f"{item.subject}.{JAFFE_CODES[item.label]}{item.index}.{n}"
        _write_image(out / f"{stem}.tiff", item.image)
        write_points(out / LANDMARKS_DIR / f"{stem}.txt", item.points)
    return n


# layout -> (writer, default classes). CK+ / SFEW layouts are one more entry each.
_LAYOUTS: dict[str, tuple[Callable[[Iterator[SynthImage], Path], int], tuple[str, ...]]] = {
    "jaffe": (_write_jaffe, JAFFE_CLASSES),
}


def known_synth_layouts() -> list[str]:
    return sorted(_LAYOUTS)


def synthesize(layout: str, out_dir: str | os.PathLike, subjects: int = 10, per_class: int = 3,
               seed: int = 0, size: int = 256, classes: tuple[str, ...] | None = None) -> SynthSummary:
    """Write a synthetic data set in `layout` into a new or empty folder; same seed, same bytes."""
    if layout not in _LAYOUTS:
        raise ValueError(f"unknown synthetic layout {layout!r}; known: {', '.join(known_synth_layouts())}")
    writer, default_classes = _LAYOUTS[layout]
    chosen = tuple(labels.class_list(classes)) if classes is not None else default_classes
    if not chosen or subjects < 1 or per_class < 1 or size < 32:
        raise ValueError(f"need at least one class, subject and image per class, and size >= 32 "
                         f"(got classes={chosen}, subjects={subjects}, per_class={per_class}, size={size})")
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output folder is not empty: {out} (synthesize writes into a new or empty folder)")
    out.mkdir(parents=True, exist_ok=True)
    n_images = writer(generate(subjects, per_class, seed, size, chosen), out)
    return SynthSummary(out_dir=str(out), layout=layout, n_images=n_images, classes=list(chosen),
                        subjects=subject_codes(subjects))
