"""Draw a grayscale face from its 68 iBUG points (plus the photographic nuisances around it).

Everything drawn is derived from the points themselves (the head outline from the jaw, the
wrinkles from brows, nose and mouth), so `draw_face` works for any 68 points, e.g. ones that a
test moved by hand, and the image always agrees with its landmarks.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from partfer.data_prep.ibug68 import N_POINTS

_SHIFT = 4                     # cv2 fixed-point bits: draw at 1/16 pixel precision
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class FaceStyle:
    """Grey levels and stroke widths of one face (widths as fractions of the jaw half-width)."""
    skin: float = 170.0
    hair: float = 50.0
    lips: float = 115.0
    sclera: float = 225.0
    iris: float = 35.0
    mouth_inside: float = 25.0
    teeth: float = 235.0
    brow_thickness: float = 0.05
    line_width: float = 0.018


def _fx(points: np.ndarray) -> np.ndarray:
    """Float pixel points -> cv2 fixed-point int32 array of shape (n, 1, 2)."""
    return np.round(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _width(fraction: float, unit: float) -> int:
    return max(1, int(round(fraction * unit)))


def _ellipse_arc(centre, axis_x, axis_y, start: float, stop: float, n: int = 24) -> np.ndarray:
    """Points on an ellipse with (possibly rotated) axis vectors, angle from start to stop."""
    t = np.linspace(start, stop, n)
    return centre + np.cos(t)[:, None] * axis_x + np.sin(t)[:, None] * axis_y


def _curve(canvas, points, value, width, closed=False) -> None:
    cv2.polylines(canvas, [_fx(points)], closed, float(value), width, cv2.LINE_AA, _SHIFT)


def _fill(canvas, points, value) -> None:
    cv2.fillPoly(canvas, [_fx(points)], float(value), cv2.LINE_AA, _SHIFT)


def draw_face(points: np.ndarray, size: int | tuple[int, int] = 256, style: FaceStyle = FaceStyle(),
              cues: dict[str, float] | None = None, canvas: np.ndarray | None = None) -> np.ndarray:
    """Draw the face whose 68 points (pixels, iBUG order) are given; returns uint8 (H, W).

    cues: strengths in [0, 1] of expression features that are not landmarks: 'fold_left',
    'fold_right' (cheek folds), 'teeth', 'forehead_wrinkles', 'glabella_lines', 'nose_wrinkles'.
    canvas: a uint8 background to draw on (a copy is drawn on); default mid-grey.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (N_POINTS, 2):
        raise ValueError(f"draw_face needs ({N_POINTS}, 2) points, got {p.shape}")
    height, width = (size, size) if isinstance(size, int) else size
    img = np.full((height, width), 128, np.uint8) if canvas is None else canvas.copy()
    cues = cues or {}

    # The face's own axes: 'right' along the jaw's top ends, 'down' toward the chin.
    left_end, right_end = p[0], p[16]
    centre = (left_end + right_end) / 2
    right = (right_end - left_end) / 2                    # half-width vector
    unit = float(np.linalg.norm(right))
    down = np.array([-right[1], right[0]])                # perpendicular, pointing down the face
    if np.dot(p[8] - centre, down) < 0:
        down = -down
    ahat, dhat = right / unit, down / unit

    _draw_head(img, p, style, centre, right, ahat, dhat, unit)
    _draw_cues(img, p, style, cues, ahat, dhat, unit)
    _draw_eyes(img, p, style, unit)
    _draw_brows(img, p, style, unit)
    _draw_nose(img, p, style, unit)
    _draw_mouth(img, p, style, cues, unit)
    return img


def _draw_head(img, p, style, centre, right, ahat, dhat, unit) -> None:
    """Neck, ears, skin and hair, all placed relative to the jaw."""
    up_axis = -dhat * unit
    skin, hair = style.skin, style.hair
    neck = np.array([p[5], p[11], p[11] + dhat * 3 * unit, p[5] + dhat * 3 * unit])
    _fill(img, neck, skin * 0.82)
    for end, side in ((p[0], -1), (p[16], 1)):
        ear_centre = end + side * ahat * 0.05 * unit + dhat * 0.1 * unit
        _fill(img, _ellipse_arc(ear_centre, ahat * 0.12 * unit, dhat * 0.25 * unit, 0, 2 * np.pi), skin * 0.9)
    # Skin: the jaw below, half an ellipse over the forehead above (from point 16 back to 0).
    top = _ellipse_arc(centre, right, up_axis * 0.92, 0.0, np.pi, 40)
    _fill(img, np.concatenate([p[0:17], top[1:-1]]), skin)
    # Hair: between a slightly larger skull arc and the hairline.
    skull = _ellipse_arc(centre, right * 1.06, up_axis * 1.0, -0.1, np.pi + 0.1, 40)
    hairline = _ellipse_arc(centre - dhat * 0.05 * unit, right * 0.92, up_axis * 0.62, np.pi + 0.05, -0.05, 40)
    _fill(img, np.concatenate([skull, hairline]), hair)


def _draw_eyes(img, p, style, unit) -> None:
    lw = _width(style.line_width, unit)
    for idx in (np.arange(36, 42), np.arange(42, 48)):
        eye = p[idx]
        _fill(img, eye, style.sclera)
        # The iris is clipped by the lids: draw it on a mask limited to the eye opening.
        centre = eye.mean(axis=0)
        radius = 0.2 * np.linalg.norm(eye[3] - eye[0])
        mask = np.zeros_like(img)
        _fill(mask, eye, 255)
        iris = np.zeros_like(img)
        cv2.circle(iris, tuple(int(v) for v in np.round(centre * _ONE)), int(radius * _ONE), 255, -1,
                   cv2.LINE_AA, _SHIFT)
        weight = (mask.astype(np.float32) / 255) * (iris.astype(np.float32) / 255)
        img[:] = np.round(img * (1 - weight) + style.iris * weight).astype(np.uint8)
        _curve(img, eye, style.iris, lw, closed=True)
        _curve(img, eye[0:4], style.iris, lw + 1)          # the upper lid line is darker/thicker


def _draw_brows(img, p, style, unit) -> None:
    th = _width(style.brow_thickness, unit)
    for idx in (np.arange(17, 22), np.arange(22, 27)):
        _curve(img, p[idx], style.hair, th)


def _draw_nose(img, p, style, unit) -> None:
    lw = _width(style.line_width, unit)
    shade = style.skin * 0.8
    _curve(img, p[27:31], shade, lw)
    _curve(img, p[31:36], style.skin * 0.55, lw)
    for idx in (32, 34):   # nostrils just above the base points
        centre = p[idx] + (p[30] - p[33]) * 0.25
        axes = (0.045 * unit, 0.025 * unit)
        cv2.ellipse(img, tuple(int(v) for v in np.round(centre * _ONE)),
                    tuple(int(v * _ONE) for v in axes), 0, 0, 360, style.skin * 0.35, -1, cv2.LINE_AA, _SHIFT)


def _draw_mouth(img, p, style, cues, unit) -> None:
    lw = _width(style.line_width, unit)
    _fill(img, p[48:60], style.lips)
    inner = p[60:68]
    opening = np.linalg.norm(p[66] - p[62])
    if opening > 0.02 * unit:
        _fill(img, inner, style.mouth_inside)
        teeth = cues.get("teeth", 0.0)
        if teeth > 0:
            # Upper teeth: a band under the upper inner lip, as deep as a third of the opening.
            upper = inner[[0, 1, 2, 3, 4]]
            lower_edge = upper[::-1] + (p[66] - p[62]) * 0.45 * teeth
            band = np.concatenate([upper, lower_edge])
            mask = np.zeros_like(img)
            _fill(mask, inner, 255)
            tooth = np.zeros_like(img)
            _fill(tooth, band, 255)
            weight = (mask.astype(np.float32) / 255) * (tooth.astype(np.float32) / 255)
            img[:] = np.round(img * (1 - weight) + style.teeth * weight).astype(np.uint8)
    _curve(img, inner[[0, 1, 2, 3, 4]], style.mouth_inside, lw)
    _curve(img, inner[[4, 5, 6, 7, 0]], style.mouth_inside, lw)


def _draw_cues(img, p, style, cues, ahat, dhat, unit) -> None:
    """Wrinkles and folds, darker than the skin in proportion to their strength."""
    lw = _width(style.line_width, unit)

    def line(points, strength):
        if strength > 0:
            _curve(img, points, style.skin * (1 - 0.45 * min(strength, 1.0)), lw)

    for side, corner, nose in (("fold_left", p[48], p[31]), ("fold_right", p[54], p[35])):
        sign = -1 if side == "fold_left" else 1
        start = nose + ahat * sign * 0.08 * unit - dhat * 0.03 * unit
        end = corner + ahat * sign * 0.07 * unit + dhat * 0.06 * unit
        mid = (start + end) / 2 + ahat * sign * 0.05 * unit
        line(np.array([start, mid, end]), cues.get(side, 0.0))
    strength = cues.get("forehead_wrinkles", 0.0)
    if strength > 0:
        brow_top = p[17:27].mean(axis=0)
        for level in (0.08, 0.15, 0.22):
            centre = brow_top - dhat * level * unit
            arc = np.array([centre - ahat * 0.45 * unit + dhat * 0.03 * unit, centre,
                            centre + ahat * 0.45 * unit + dhat * 0.03 * unit])
            line(arc, strength)
    strength = cues.get("glabella_lines", 0.0)
    if strength > 0:
        mid = (p[21] + p[22]) / 2
        for sign in (-1, 1):
            base = mid + ahat * sign * 0.04 * unit
            line(np.array([base - dhat * 0.03 * unit, base + dhat * 0.12 * unit]), strength)
    strength = cues.get("nose_wrinkles", 0.0)
    if strength > 0:
        for idx in (28, 29):
            for sign in (-1, 1):
                a = p[idx] + ahat * sign * 0.03 * unit
                line(np.array([a, a + ahat * sign * 0.09 * unit - dhat * 0.04 * unit]), strength)


def background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Cluttered, blurred background: random rectangles, discs and lines of random grey levels."""
    img = np.full((size, size), rng.uniform(40, 200), np.float32)
    for _ in range(int(rng.integers(6, 14))):
        value = float(rng.uniform(0, 255))
        kind = rng.integers(0, 3)
        a = rng.uniform(0, size, 2)
        b = rng.uniform(0, size, 2)
        if kind == 0:
            cv2.rectangle(img, tuple(int(v) for v in a), tuple(int(v) for v in b), value, -1)
        elif kind == 1:
            cv2.circle(img, tuple(int(v) for v in a), int(rng.uniform(0.03, 0.2) * size), value, -1)
        else:
            cv2.line(img, tuple(int(v) for v in a), tuple(int(v) for v in b), value,
                     max(1, int(rng.uniform(0.005, 0.03) * size)))
    sigma = 0.01 * size + 0.5
    return np.clip(cv2.GaussianBlur(img, (0, 0), sigma), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Lighting:
    """One shot's light and sensor: kept for all frames of a video sequence, drawn anew per photo."""
    angle: float = 0.0        # direction of the illumination gradient (radians)
    strength: float = 0.0     # gradient: relative brightness change from image centre to edge
    gain: float = 1.0         # overall exposure
    noise: float = 4.0        # sensor noise standard deviation (grey levels)
    blur: float = 0.004       # lens softness: Gaussian sigma as a fraction of the width (+ 0.4 px)


def random_lighting(rng: np.random.Generator, strength: tuple[float, float] = (0.0, 0.35),
                    gain: tuple[float, float] = (0.85, 1.1), noise: tuple[float, float] = (2.0, 7.0),
                    blur: tuple[float, float] | None = None) -> Lighting:
    """Random lighting from the given ranges (defaults: a studio-like photograph)."""
    angle = rng.uniform(0, 2 * np.pi)
    chosen_strength = rng.uniform(*strength)
    chosen_gain = rng.uniform(*gain)
    chosen_noise = rng.uniform(*noise)
    chosen_blur = 0.004 if blur is None else rng.uniform(*blur)
    return Lighting(angle, chosen_strength, chosen_gain, chosen_noise, chosen_blur)


def plain_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A lab backdrop: one grey level with a soft vertical shading, nothing else."""
    level = rng.uniform(60, 200)
    shade = np.linspace(-1.0, 1.0, size, dtype=np.float32)[:, None] * rng.uniform(-15, 15)
    return np.clip(np.round(level + shade + np.zeros((size, size), np.float32)), 0, 255).astype(np.uint8)


def photograph(img: np.ndarray, rng: np.random.Generator, lighting: Lighting | None = None) -> np.ndarray:
    """Illumination gradient, lens softness and sensor noise: what makes drawings look photographed.

    lighting: fixed light for a series of shots (only the noise is drawn anew); default random.
    """
    if lighting is None:
        lighting = random_lighting(rng)
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx / w - 0.5) * np.cos(lighting.angle) + (yy / h - 0.5) * np.sin(lighting.angle)) * 2 * lighting.strength
    out = img.astype(np.float32) * (1 + ramp) * lighting.gain
    out = cv2.GaussianBlur(out, (0, 0), lighting.blur * w + 0.4)
    out += rng.normal(0, lighting.noise, out.shape).astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
