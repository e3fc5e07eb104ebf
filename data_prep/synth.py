"""Synthetic labelled face data sets, written in a real data set's layout with true landmarks.

Tests and demos need data whose labels are learnable and whose landmarks are exact, without the
licensed data sets. Each subject gets an identity, each class an expression deformation, each
image a random intensity, pose, illumination and noise. A layout writer decides names, folders and
how images relate (CK+: video sequences from neutral to peak, data_prep.synth_ckplus; SFEW: "in
the wild" shots, data_prep.synth_sfew); JAFFE's writer is here.
"""
from __future__ import annotations

import os
import shutil
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from partfer import atomicio
from partfer.data_prep import labels, synth_ckplus, synth_sfew
from partfer.data_prep.face_drawing import background, draw_face, photograph
from partfer.data_prep.face_geometry import (
    Identity, expression_cues, expression_points, neutral_points, pose_points, random_identity,
    random_pose,
)
from partfer.data_prep.landmark_files import write_points
from partfer.data_prep.readers.base import LANDMARKS_DIR
from partfer.data_prep.synth_base import SynthRequest, Written, style_of, write_image_file

__all__ = ["SynthSummary", "SynthImage", "SynthRequest", "synthesize", "generate", "draw_face",
           "subject_codes", "render_image", "known_synth_layouts"]

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


@dataclass(frozen=True)
class SynthLayout:
    write: Callable[[SynthRequest, Path], Written]
    default_classes: tuple[str, ...]
    check: Callable[[SynthRequest], None] = lambda request: None   # layout-specific limits


def _write_jaffe(request: SynthRequest, out: Path) -> Written:
    """JAFFE: flat `KA.AN1.39.tiff`, id a running number; points in landmarks/<stem>.txt."""
    (out / LANDMARKS_DIR).mkdir(parents=True, exist_ok=True)
    n = 0
    images = generate(request.subjects, request.per_class, request.seed, request.size, request.classes)
    for n, item in enumerate(images, start=1):
        stem = f"{item.subject}.{JAFFE_CODES[item.label]}{item.index}.{n}"
        write_image_file(out / f"{stem}.tiff", item.image)
        write_points(out / LANDMARKS_DIR / f"{stem}.txt", item.points)
    return Written(n, list(request.classes), subject_codes(request.subjects))


def _layouts() -> dict[str, SynthLayout]:
    return {
        "jaffe": SynthLayout(_write_jaffe, JAFFE_CLASSES),
        "ckplus": SynthLayout(synth_ckplus.write_ckplus, synth_ckplus.CKPLUS_CLASSES, synth_ckplus.check),
        "sfew": SynthLayout(synth_sfew.write_sfew, synth_sfew.SFEW_CLASSES, synth_sfew.check),
    }


def known_synth_layouts() -> list[str]:
    return sorted(_layouts())


# Upper bounds of a request: far above any real data set (CK+ has 118 subjects, images are a few
# hundred pixels), low enough that a mistyped value cannot fill a disk.
MAX_SIZE = 2048
MAX_SUBJECTS = 10_000
MAX_PER_CLASS = 1_000
MAX_FRAMES = 100


def check_request(layout: str, subjects: int = 10, per_class: int = 3, seed: int = 0, size: int = 256,
                  classes: tuple[str, ...] | None = None, frames: int = 6) -> tuple[SynthLayout, SynthRequest]:
    """The layout and request `synthesize` would make of these arguments; ValueError (one line)
    for any it cannot make, before anything is written (a config's `synthetic` section is checked
    with it before a run starts)."""
    layouts = _layouts()
    if layout not in layouts:
        raise ValueError(f"unknown synthetic layout {layout!r}; known: {', '.join(sorted(layouts))}")
    spec = layouts[layout]
    for name, value, low, high in (("subjects", subjects, 1, MAX_SUBJECTS), ("per_class", per_class, 1, MAX_PER_CLASS),
                                   ("seed", seed, 0, 2**32 - 1), ("size", size, 32, MAX_SIZE),
                                   ("frames", frames, 1, MAX_FRAMES)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be a whole number in [{low}, {high}], got {value!r}")
    if classes is not None and (isinstance(classes, str) or not all(isinstance(c, str) for c in classes)):
        raise ValueError(f"classes must be a list of names, got {classes!r}")
    chosen = tuple(labels.class_list(classes)) if classes is not None else spec.default_classes
    if not chosen:
        raise ValueError("need at least one class")
    request = SynthRequest(subjects, per_class, seed, size, chosen, frames)
    spec.check(request)
    return spec, request


def synthesize(layout: str, out_dir: str | os.PathLike, subjects: int = 10, per_class: int = 3,
               seed: int = 0, size: int = 256, classes: tuple[str, ...] | None = None,
               frames: int = 6) -> SynthSummary:
    """Write a synthetic data set in `layout` (jaffe, ckplus, sfew) into a new or empty folder;
    same seed, same bytes. `frames` is CK+'s frames per sequence (ignored by the others)."""
    spec, request = check_request(layout, subjects, per_class, seed, size, classes, frames)
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output folder is not empty: {out} (synthesize writes into a new or empty folder)")
    # built beside `out` and renamed into place whole: a killed synth leaves no half data set
    # under the final name that prep would take for a complete one
    build = atomicio.make_temp_dir(out)
    try:
        written = spec.write(request, build)
        atomicio.publish_dir(build, out, lambda folder: False)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return SynthSummary(out_dir=str(out), layout=layout, n_images=written.n_images,
                        classes=written.classes, subjects=written.subjects)
