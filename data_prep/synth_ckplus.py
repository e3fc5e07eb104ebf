"""Synthetic CK+ in its official layout: per subject, video sequences from neutral onset to peak.

    cohn-kanade-images/S005/001/S005_001_00000001.png
    Emotion/S005/001/S005_001_00000006_emotion.txt        "   3.0000000e+00" (most sequences)
    Landmarks/S005/001/S005_001_00000001_landmarks.txt    68 "   x   y" lines, every frame

Like the real recordings, a sequence keeps its person, backdrop, light and (almost) head pose,
while the expression intensity ramps from 0 at the first frame to the peak at the last. Every
third subject (the first included) has one extra sequence without an Emotion file, as CK+ has
hundreds, so the reader's handling of unlabelled sequences is exercised.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from partfer.data_prep import labels
from partfer.data_prep.face_drawing import draw_face, photograph, plain_background, random_lighting
from partfer.data_prep.face_geometry import (
    Identity, Pose, expression_cues, expression_points, neutral_points, pose_points, random_identity,
    random_pose,
)
from partfer.data_prep.readers.ckplus import EMOTION_DIR, EMOTIONS, IMAGES_DIR, LANDMARKS_DIR, MIN_FRAMES
from partfer.data_prep.synth_base import SynthRequest, Written, style_of, write_bytes_file, write_image_file

CKPLUS_CLASSES = labels.CANONICAL              # 8: the neutral class comes from the onset frames
UNLABELLED_EVERY = 3
MAX_SUBJECTS = 199                             # S005 ... S995: three-digit ids, as in CK+


def subject_ids(n: int) -> list[str]:
    """CK+-style ids that sort in numeric order: S005, S010, S015 ..."""
    return [f"S{5 * (i + 1):03d}" for i in range(n)]


def check(request: SynthRequest) -> None:
    if request.frames < MIN_FRAMES:
        raise ValueError(f"ckplus needs at least {MIN_FRAMES} frames per sequence (first + last 3), "
                         f"got frames={request.frames}")
    if request.subjects > MAX_SUBJECTS:
        raise ValueError(f"ckplus synthesizes at most {MAX_SUBJECTS} subjects (three-digit ids), "
                         f"got {request.subjects}")
    if not expressions_of(request.classes):
        raise ValueError("ckplus needs at least one expression besides neutral (neutral comes from "
                         "every sequence's first frame)")


def expressions_of(classes: tuple[str, ...]) -> list[str]:
    return [c for c in classes if c != "neutral"]


def sequence_plan(subject_index: int, expressions: list[str], per_class: int, seed: int
                  ) -> list[tuple[str, bool]]:
    """(expression, labelled) per sequence of one subject, numbered in this order from 001.

    The order is shuffled (per subject and seed) so sequence numbers do not give the class away.
    """
    plan = [(expression, True) for expression in expressions for _ in range(per_class)]
    order = np.random.default_rng([seed, 4, subject_index]).permutation(len(plan))
    plan = [plan[i] for i in order]
    if subject_index % UNLABELLED_EVERY == 0:
        plan.append((expressions[subject_index % len(expressions)], False))
    return plan


def ramp(t: float) -> float:
    """Expression intensity along a sequence (0 at onset, 1 at peak), eased out: the last frames
    are all near the peak, as in CK+'s recordings."""
    return 1.0 - (1.0 - t) ** 2


def render_sequence(ident: Identity, expression: str, rng: np.random.Generator, size: int, frames: int
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, 68 true points) per frame: one person, backdrop and light; the expression grows."""
    peak = rng.uniform(0.75, 1.0)
    pose = random_pose(rng, size)
    backdrop = plain_background(size, rng)
    lighting = random_lighting(rng, strength=(0.0, 0.2), gain=(0.9, 1.05), noise=(1.5, 4.0))
    neutral = neutral_points(ident)
    out = []
    for frame in range(frames):
        intensity = peak * ramp(frame / (frames - 1))
        face = expression_points(neutral, expression, intensity)
        # A seated subject's head barely moves during a sequence.
        jitter = Pose(pose.angle_deg + rng.normal(0, 0.4), pose.scale * (1 + rng.normal(0, 0.004)),
                      pose.tx + rng.normal(0, 0.003) * size, pose.ty + rng.normal(0, 0.003) * size)
        points = pose_points(face, jitter, size)
        drawn = draw_face(points, size, style_of(ident), expression_cues(expression, intensity), backdrop)
        out.append((photograph(drawn, rng, lighting), points))
    return out


def emotion_text(label: str) -> str:
    """An Emotion file's content, in CK+'s own format."""
    return f"   {float(EMOTIONS.index(label)):.7e}\n"


def landmarks_text(points: np.ndarray) -> str:
    """A Landmarks file's content, in CK+'s own format (68 lines, two numbers each)."""
    return "".join(f"   {x:.7e}   {y:.7e}\n" for x, y in points)


def write_ckplus(request: SynthRequest, out: Path) -> Written:
    expressions = expressions_of(request.classes)
    ids = subject_ids(request.subjects)
    n_images = 0
    for s, subject in enumerate(ids):
        ident = random_identity(np.random.default_rng([request.seed, 0, s]))
        for number, (expression, labelled) in enumerate(
                sequence_plan(s, expressions, request.per_class, request.seed), start=1):
            sequence = f"{number:03d}"
            rng = np.random.default_rng([request.seed, 2, s, number])
            frames = render_sequence(ident, expression, rng, request.size, request.frames)
            for frame, (image, points) in enumerate(frames, start=1):
                stem = f"{subject}_{sequence}_{frame:08d}"
                write_image_file(out / IMAGES_DIR / subject / sequence / f"{stem}.png", image)
                write_bytes_file(out / LANDMARKS_DIR / subject / sequence / f"{stem}_landmarks.txt",
                                 landmarks_text(points).encode())
            n_images += len(frames)
            emotion_dir = out / EMOTION_DIR / subject / sequence
            emotion_dir.mkdir(parents=True, exist_ok=True)   # CK+ has the folder even when empty
            if labelled:
                write_bytes_file(emotion_dir / f"{subject}_{sequence}_{request.frames:08d}_emotion.txt",
                                 emotion_text(expression).encode())
    return Written(n_images, labels.class_list(expressions + ["neutral"]), ids)
