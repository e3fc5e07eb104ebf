"""Synthetic SFEW 2.0: `Train/<Class>/*.png` and `Val/<Class>/*.png`, faces "in the wild".

SFEW's frames come from movies: larger head rotations, faces of any size anywhere in the frame,
cluttered scenes, harsh light, blur, noise and colour, and subtler expressions than a lab set.
The synthetic set exaggerates all of these relative to the JAFFE and CK+ layouts. Each synthetic
subject acts in one "movie" (its name starts every file name, so a subject_regex can recover it),
and subjects are disjoint between Train and Val, as SFEW's people are. True points go into a
sidecar tree `landmarks/<Split>/<Class>/<stem>.txt`, where the sfew reader finds them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from partfer.data_prep import labels
from partfer.data_prep.face_drawing import background, draw_face, photograph, random_lighting
from partfer.data_prep.face_geometry import (
    Identity, Pose, expression_cues, expression_points, neutral_points, pose_points, random_identity,
)
from partfer.data_prep.landmark_files import write_points
from partfer.data_prep.readers.base import LANDMARKS_DIR
from partfer.data_prep.synth_base import SynthRequest, Written, style_of, write_image_file

SFEW_CLASSES = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
FOLDER_NAMES = {"anger": "Angry", "contempt": "Contempt", "disgust": "Disgust", "fear": "Fear",
                "happiness": "Happy", "neutral": "Neutral", "sadness": "Sad", "surprise": "Surprise"}
TRAIN_FRACTION = 2 / 3


def movie_names(n: int) -> list[str]:
    return [f"Movie{i + 1:02d}" for i in range(n)]


def check(request: SynthRequest) -> None:
    if request.subjects < 2:
        raise ValueError(f"sfew needs at least 2 subjects (Train and Val have different people), "
                         f"got {request.subjects}")


def split_of(subject_index: int, subjects: int) -> str:
    """Train for the first two thirds of the subjects (at least one), Val for the rest (at least one)."""
    n_train = min(subjects - 1, max(1, round(subjects * TRAIN_FRACTION)))
    return "Train" if subject_index < n_train else "Val"


def wild_pose(rng: np.random.Generator, size: int) -> Pose:
    """Rotation up to 20 degrees, a face 70-95 % of the lab size, shifted up to 8 % of the frame:
    more varied than the lab poses, yet every landmark stays inside the image."""
    return Pose(angle_deg=rng.uniform(-20, 20), scale=rng.uniform(0.7, 0.95),
                tx=rng.uniform(-0.08, 0.08) * size, ty=rng.uniform(-0.08, 0.08) * size)


def render_wild(ident: Identity, expression: str, rng: np.random.Generator, size: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """A BGR movie-still-like image of one person's expression, and its true 68 points."""
    intensity = rng.uniform(0.5, 1.0) if expression != "neutral" else 0.0
    points = pose_points(expression_points(neutral_points(ident), expression, intensity),
                         wild_pose(rng, size), size)
    drawn = draw_face(points, size, style_of(ident), expression_cues(expression, intensity),
                      background(size, rng))
    lighting = random_lighting(rng, strength=(0.2, 0.8), gain=(0.55, 1.35), noise=(4.0, 14.0),
                               blur=(0.002, 0.012))
    gray = photograph(drawn, rng, lighting).astype(np.float32)
    tint = rng.uniform(0.8, 1.2, 3).astype(np.float32)        # a colour cast per shot
    colour = np.clip(np.round(gray[:, :, None] * tint), 0, 255).astype(np.uint8)
    return colour, points


def write_sfew(request: SynthRequest, out: Path) -> Written:
    movies = movie_names(request.subjects)
    n_images = 0
    for s, movie in enumerate(movies):
        split = split_of(s, request.subjects)
        ident = random_identity(np.random.default_rng([request.seed, 0, s]))
        shot = 0
        for label in request.classes:
            class_id = labels.CANONICAL.index(label)
            folder = Path(split) / FOLDER_NAMES[label]
            for index in range(1, request.per_class + 1):
                rng = np.random.default_rng([request.seed, 3, s, class_id, index])
                image, points = render_wild(ident, label, rng, request.size)
                # SFEW-like name: movie, time stamp, frame; the running shot number keeps it unique.
                shot += 1
                stem = f"{movie}_{shot * 1000 + int(rng.integers(0, 1000)):09d}_{int(rng.integers(1, 100)):08d}"
                write_image_file(out / folder / f"{stem}.png", image)
                (out / LANDMARKS_DIR / folder).mkdir(parents=True, exist_ok=True)
                write_points(out / LANDMARKS_DIR / folder / f"{stem}.txt", points)
                n_images += 1
    return Written(n_images, list(request.classes), movies)
