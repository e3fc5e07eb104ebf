"""Grad-CAM sheets of `partfer predict --gradcam`: every panel's title is drawn in full."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from partfer.orchestrator.inference.gradcam_sheet import FONT, MIN_PANEL, PAD, gradcam_sheet, title_layout

LONG = ["eyebrows_f2: surprise", "eyes_f2: happiness", "nose_f2: disgust", "mouth_f2: sadness", "jaw_f2: contempt"]


@pytest.mark.parametrize("titles, union", [
    (["eyebrows: fear", "eyes: happy", "nose: sad", "mouth: angry", "jaw: neutral"], "union (ensemble: fear)"),
    (LONG, "union (ensemble: surprise)"),
    (["m0_f10: a-very-long-class-name-without-spaces"] * 5, "union (ensemble: a-very-long-class-name-without-spaces)"),
])
def test_every_title_fits_its_panel(titles, union):
    lines, scale = title_layout(["face", *titles, union], MIN_PANEL)
    assert scale > 0.2                                                     # still legible
    for original, parts in zip(["face", *titles, union], lines):
        assert " ".join(parts) == original and len(parts) <= 2             # nothing dropped
        for line in parts:
            assert cv2.getTextSize(line, FONT, scale, 1)[0][0] <= MIN_PANEL - 2 * PAD, line

    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, (48, 48), dtype=np.uint8)
    sheet = gradcam_sheet(crop, rng.random((5, 8, 8)), titles, rng.random((8, 8)), union)
    assert sheet.shape[1] == 7 * MIN_PANEL
    bar = sheet.shape[0] - MIN_PANEL
    for k in range(7):
        title_bar = sheet[:bar, k * MIN_PANEL:(k + 1) * MIN_PANEL]
        assert title_bar.max() > 200                                       # the title is drawn
        assert title_bar[:, -2:].max() == 0 and title_bar[-2:].max() == 0  # and ends inside its bar
