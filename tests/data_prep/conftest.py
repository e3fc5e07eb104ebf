"""Fixtures shared by the data_prep tests: real image files, real synthetic sets (the real Ray is
tests/conftest.py's shared_ray)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest


def _write_image(path: Path, size: int = 32, value: int | None = None) -> Path:
    """A real (small) image file; the extension picks the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    pixels = rng.integers(0, 256, (size, size), dtype=np.uint8) if value is None else np.full((size, size), value, np.uint8)
    assert cv2.imwrite(str(path), pixels), path
    return path


@pytest.fixture(scope="session")
def write_image():
    """write_image(path, size=32, value=None) -> path: writes a real image file."""
    return _write_image


@pytest.fixture(scope="session")
def astronaut_png(tmp_path_factory) -> Path:
    """scikit-image's astronaut photograph (one frontal face) as a PNG file."""
    from skimage import data

    path = tmp_path_factory.mktemp("astronaut") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path
