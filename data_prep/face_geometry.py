"""68-point iBUG face geometry for synthetic data: identity, expression deformation, pose.

Points live in a face frame (x to the image right, y down, the jaw half-width ~1, origin between
eyes and mouth) until `pose_points` maps them to pixels. Index order and orientation follow iBUG
300-W: point 0 is the subject's right jaw end, which appears on the IMAGE LEFT; 36-41 is the eye on
the image left. The expressions move the same points that real expressions move (FACS-style), so
a landmark network has something true to learn and a classifier has distinct classes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from partfer.data_prep.ibug68 import N_POINTS

# Index groups used by the expressions.
JAW = np.arange(0, 17)
BROW_LEFT = np.arange(17, 22)      # image-left brow, outer -> inner
BROW_RIGHT = np.arange(22, 27)     # image-right brow, inner -> outer
BROWS = np.arange(17, 27)
BROW_INNER = np.array([21, 22])
BROW_NEAR_INNER = np.array([20, 23])
BROW_OUTER = np.array([17, 26])
NOSE_TIP = np.array([30])
NOSE_BASE = np.arange(31, 36)
UPPER_LIDS = np.array([37, 38, 43, 44])
LOWER_LIDS = np.array([40, 41, 46, 47])
MOUTH_CORNERS = np.array([48, 54, 60, 64])
UPPER_LIP_OUTER = np.arange(49, 54)
LOWER_LIP_OUTER = np.arange(55, 60)
UPPER_LIP_INNER = np.arange(61, 64)
LOWER_LIP_INNER = np.arange(65, 68)
UPPER_LIP = np.concatenate([UPPER_LIP_OUTER, UPPER_LIP_INNER])
LOWER_LIP = np.concatenate([LOWER_LIP_OUTER, LOWER_LIP_INNER])

# Scales every expression movement: large enough that expression, not identity, dominates the
# geometry (a nearest-centroid classifier on landmarks separates the classes across subjects).
EXPRESSION_GAIN = 1.4

EXPRESSIONS = ("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")


@dataclass(frozen=True)
class Identity:
    """Shape and appearance of one synthetic person (all lengths in face-frame units)."""
    face_width: float = 1.0        # jaw half-width at its top ends
    chin: float = 1.0              # chin height below the origin
    jaw_top: float = -0.18         # height of points 0 and 16
    eye_spacing: float = 0.40      # eye centre distance from the midline
    eye_y: float = -0.25
    eye_width: float = 0.17        # half-width of an eye
    eye_open: float = 0.065        # half-height of an open eye
    brow_gap: float = 0.21         # brow height above the eye centre
    brow_thickness: float = 0.05
    nose_tip: float = 0.16         # height of the nose tip (point 30)
    nose_width: float = 0.19
    mouth_y: float = 0.52
    mouth_width: float = 0.30      # half-width, corner to midline
    lip_thickness: float = 0.065
    skin: float = 170.0            # grey levels
    hair: float = 50.0
    lips: float = 115.0


def random_identity(rng: np.random.Generator) -> Identity:
    """A distinct person: every shape parameter and tone drawn from a plausible range."""
    u = rng.uniform
    skin = u(120, 210)
    return Identity(
        face_width=u(0.92, 1.06), chin=u(0.94, 1.06), jaw_top=u(-0.21, -0.14),
        eye_spacing=u(0.37, 0.43), eye_y=u(-0.29, -0.23), eye_width=u(0.15, 0.18),
        eye_open=u(0.058, 0.072), brow_gap=u(0.19, 0.24), brow_thickness=u(0.035, 0.07),
        nose_tip=u(0.12, 0.20), nose_width=u(0.16, 0.22), mouth_y=u(0.48, 0.55),
        mouth_width=u(0.27, 0.32), lip_thickness=u(0.055, 0.075),
        skin=skin, hair=u(15, 90), lips=skin * u(0.55, 0.8),
    )


def neutral_points(ident: Identity) -> np.ndarray:
    """The 68 points of a relaxed face in the face frame, symmetric about x = 0."""
    p = np.zeros((N_POINTS, 2))
    # Jaw: a U from the image-left top end (0) through the chin (8) to the image-right end (16).
    phi = np.pi * np.arange(17) / 16
    p[JAW, 0] = -ident.face_width * np.cos(phi)
    p[JAW, 1] = ident.jaw_top + (ident.chin - ident.jaw_top) * np.sin(phi) ** 0.9
    # Brows: image-left brow from its outer to its inner end, arched; the right one mirrors it.
    s = np.linspace(0.0, 1.0, 5)
    brow_y = ident.eye_y - ident.brow_gap
    left_brow = np.stack([-ident.eye_spacing - 0.22 + 0.42 * s,
                          brow_y - 0.06 * np.sin(np.pi * (0.15 + 0.7 * s)) + 0.02 * s], axis=1)
    p[BROW_LEFT] = left_brow
    p[BROW_RIGHT] = left_brow[::-1] * [-1, 1]
    # Nose: bridge 27-30 straight down the midline, base 31-35 from image left to right.
    bridge_top = ident.eye_y - 0.02
    p[27:31, 0] = 0.0
    p[27:31, 1] = np.linspace(bridge_top, ident.nose_tip, 4)
    base_y = ident.nose_tip + 0.07
    p[NOSE_BASE, 0] = ident.nose_width * np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    p[NOSE_BASE, 1] = base_y + np.array([-0.02, 0.01, 0.025, 0.01, -0.02])
    # Eyes, both listed left to right on the image: 36 outer corner, 37-38 upper lid, 39 inner
    # corner, 40-41 lower lid; 42 inner corner, 43-44 upper lid, 45 outer corner, 46-47 lower lid.
    w, h = ident.eye_width, ident.eye_open
    eye_offsets = np.array([[-w, 0], [-w / 3, -h], [w / 3, -h], [w, 0], [w / 3, 0.9 * h], [-w / 3, 0.9 * h]])
    p[36:42] = [-ident.eye_spacing, ident.eye_y] + eye_offsets
    p[42:48] = [ident.eye_spacing, ident.eye_y] + eye_offsets
    # Mouth, outer lip: 48 left corner, 49-53 upper lip, 54 right corner, 55-59 lower lip back.
    mw, my, lt = ident.mouth_width, ident.mouth_y, ident.lip_thickness
    p[48] = [-mw, my]
    p[49] = [-0.6 * mw, my - 0.8 * lt]
    p[50] = [-0.25 * mw, my - lt]
    p[51] = [0.0, my - 0.85 * lt]
    p[52] = [0.25 * mw, my - lt]
    p[53] = [0.6 * mw, my - 0.8 * lt]
    p[54] = [mw, my]
    p[55] = [0.6 * mw, my + 0.9 * lt]
    p[56] = [0.25 * mw, my + 1.1 * lt]
    p[57] = [0.0, my + 1.15 * lt]
    p[58] = [-0.25 * mw, my + 1.1 * lt]
    p[59] = [-0.6 * mw, my + 0.9 * lt]
    # Inner lip: 60 left inner corner, 61-63 upper, 64 right inner corner, 65-67 lower (right to left).
    gap = 0.006
    p[60] = [-0.85 * mw, my]
    p[61] = [-0.35 * mw, my - gap]
    p[62] = [0.0, my - gap]
    p[63] = [0.35 * mw, my - gap]
    p[64] = [0.85 * mw, my]
    p[65] = [0.35 * mw, my + gap]
    p[66] = [0.0, my + gap]
    p[67] = [-0.35 * mw, my + gap]
    return p


def _move(p: np.ndarray, idx, dx: float = 0.0, dy: float = 0.0) -> None:
    p[idx, 0] += dx
    p[idx, 1] += dy


def _toward_midline(p: np.ndarray, idx, amount: float) -> None:
    """Move points horizontally toward x = 0 (negative amount: away from it)."""
    p[idx, 0] -= np.sign(p[idx, 0]) * amount


def _drop_jaw(p: np.ndarray, amount: float) -> None:
    """Open the jaw: the chin moves most, the jaw's top ends not at all; the lower lip follows."""
    top = p[JAW, 1].min()
    weight = (p[JAW, 1] - top) / max(p[JAW, 1].max() - top, 1e-6)
    p[JAW, 1] += amount * weight
    p[LOWER_LIP, 1] += amount * 0.85


def expression_points(neutral: np.ndarray, expression: str, intensity: float = 1.0) -> np.ndarray:
    """The neutral face deformed by one expression at an intensity in [0, 1]."""
    if expression not in EXPRESSIONS:
        raise ValueError(f"unknown expression {expression!r}; known: {', '.join(EXPRESSIONS)}")
    p = neutral.copy()
    k = float(intensity) * EXPRESSION_GAIN
    if expression == "happiness":       # AU6 + AU12: corners up and out, cheeks raise the lower lids
        _move(p, MOUTH_CORNERS, dy=-0.10 * k)
        _toward_midline(p, MOUTH_CORNERS, -0.07 * k)
        _move(p, [49, 53, 59, 55], dy=-0.04 * k)
        _move(p, LOWER_LIP_OUTER, dy=0.03 * k)
        _move(p, LOWER_LIP_INNER, dy=0.04 * k)       # lips part over the teeth
        _move(p, LOWER_LIDS, dy=-0.025 * k)
        _toward_midline(p, [2, 3, 4, 12, 13, 14], -0.02 * k)
    elif expression == "sadness":       # AU1 + AU4 + AU15: inner brows up, corners down
        _move(p, BROW_INNER, dy=-0.10 * k)
        _move(p, BROW_NEAR_INNER, dy=-0.05 * k)
        _move(p, BROW_OUTER, dy=0.04 * k)
        _move(p, UPPER_LIDS, dy=0.015 * k)
        _move(p, MOUTH_CORNERS, dy=0.08 * k)
        _toward_midline(p, MOUTH_CORNERS, 0.02 * k)
        _move(p, [49, 53], dy=0.03 * k)
        _move(p, [56, 57, 58], dy=-0.015 * k)
    elif expression == "surprise":      # AU1 + AU2 + AU5 + AU26: brows high, eyes wide, jaw dropped
        _move(p, BROWS, dy=-0.15 * k)
        _move(p, UPPER_LIDS, dy=-0.04 * k)
        _move(p, LOWER_LIDS, dy=0.02 * k)
        _move(p, UPPER_LIP_INNER, dy=-0.02 * k)
        _toward_midline(p, MOUTH_CORNERS, 0.07 * k)
        _move(p, LOWER_LIP_INNER, dy=0.05 * k)
        _drop_jaw(p, 0.20 * k)
    elif expression == "anger":         # AU4 + AU7 + AU23/24: brows down and together, lips pressed
        _move(p, BROWS, dy=0.07 * k)
        _move(p, BROW_INNER, dy=0.06 * k)
        _toward_midline(p, BROW_INNER, 0.06 * k)
        _toward_midline(p, BROW_NEAR_INNER, 0.03 * k)
        _move(p, UPPER_LIDS, dy=0.02 * k)
        _move(p, LOWER_LIDS, dy=-0.015 * k)
        _move(p, UPPER_LIP_OUTER, dy=0.025 * k)
        _move(p, LOWER_LIP_OUTER, dy=-0.03 * k)
        _toward_midline(p, MOUTH_CORNERS, 0.03 * k)
    elif expression == "disgust":       # AU9 + AU10: nose wrinkled/shortened, upper lip raised
        _move(p, UPPER_LIP, dy=-0.07 * k)
        _move(p, NOSE_TIP, dy=-0.05 * k)
        _move(p, NOSE_BASE, dy=-0.05 * k)
        _toward_midline(p, [31, 32, 34, 35], -0.025 * k)
        _move(p, BROWS, dy=0.05 * k)
        _toward_midline(p, BROW_INNER, 0.025 * k)
        _move(p, LOWER_LIDS, dy=-0.025 * k)
        _move(p, MOUTH_CORNERS, dy=0.02 * k)
    elif expression == "fear":          # AU1 + AU2 + AU4 + AU5 + AU20: brows up and together, lips stretched
        _move(p, BROWS, dy=-0.09 * k)
        _move(p, BROW_INNER, dy=-0.03 * k)
        _toward_midline(p, BROW_INNER, 0.05 * k)
        _toward_midline(p, BROW_NEAR_INNER, 0.025 * k)
        _move(p, UPPER_LIDS, dy=-0.035 * k)
        _move(p, LOWER_LIDS, dy=0.01 * k)
        _toward_midline(p, MOUTH_CORNERS, -0.08 * k)
        _move(p, MOUTH_CORNERS, dy=0.02 * k)
        _move(p, LOWER_LIP_INNER, dy=0.03 * k)
        _drop_jaw(p, 0.05 * k)
    elif expression == "contempt":      # AU14 on one side: the image-right corner pulled up and out
        _move(p, [54, 64], dx=0.05 * k, dy=-0.08 * k)
        _move(p, [53, 55, 63, 65], dx=0.02 * k, dy=-0.035 * k)
    return p


def expression_cues(expression: str, intensity: float = 1.0) -> dict[str, float]:
    """Skin features the drawing adds for an expression (wrinkles, folds, teeth), with strengths."""
    k = float(intensity)
    return {
        "happiness": {"fold_left": k, "fold_right": k, "teeth": k},
        "surprise": {"forehead_wrinkles": k},
        "fear": {"forehead_wrinkles": 0.5 * k, "teeth": 0.6 * k},
        "anger": {"glabella_lines": k},
        "disgust": {"nose_wrinkles": k, "fold_left": 0.6 * k, "fold_right": 0.6 * k},
        "contempt": {"fold_right": 0.8 * k},
    }.get(expression, {})


@dataclass(frozen=True)
class Pose:
    """Similarity transform from the face frame to pixels."""
    angle_deg: float = 0.0
    scale: float = 1.0
    tx: float = 0.0      # pixels
    ty: float = 0.0


def random_pose(rng: np.random.Generator, size: int) -> Pose:
    """Small in-plane rotation (+-8 deg), scale (+-8 %) and translation (+-4 % of the image)."""
    return Pose(angle_deg=rng.uniform(-8, 8), scale=rng.uniform(0.92, 1.08),
                tx=rng.uniform(-0.04, 0.04) * size, ty=rng.uniform(-0.04, 0.04) * size)


# Face-frame units to pixels: a jaw half-width of 1 is 32 % of the image, so the head (about
# 2.1 units tall, 2 wide) fills 60-75 % of it and a whole-image 'none' crop is a fair face crop.
UNIT_FRACTION = 0.32
ORIGIN_Y_FRACTION = 0.47


def pose_points(points: np.ndarray, pose: Pose, size: int) -> np.ndarray:
    """Face-frame points -> pixel coordinates (pixel centres at integers) in a size x size image."""
    theta = np.deg2rad(pose.angle_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    unit = UNIT_FRACTION * size * pose.scale
    origin = np.array([size / 2 + pose.tx, ORIGIN_Y_FRACTION * size + pose.ty])
    return origin + unit * points @ rot.T
