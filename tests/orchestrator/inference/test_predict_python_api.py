"""Prediction from Python: `from partfer import Predictor` (without `import partfer` importing
torch), predict_image on a path, a numpy array or a PIL image, and annotate_image giving the drawn
picture in memory. A real model directory (conftest), the real SSD on scikit-image's astronaut."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from partfer.orchestrator.inference.predict import PredictError, Predictor


@pytest.fixture(scope="module")
def predictor(ssd_model) -> Predictor:
    return Predictor.from_dir(ssd_model, device="cpu")


def test_import_partfer_stays_free_of_torch():
    done = subprocess.run([sys.executable, "-c", "import sys, partfer; print('torch' in sys.modules)"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_predictor_is_a_top_level_name():
    import partfer
    from partfer import Predictor as top

    assert top is Predictor and "Predictor" in dir(partfer)
    with pytest.raises(AttributeError, match="module 'partfer' has no attribute 'Nothing'"):
        partfer.Nothing


def test_predict_image_takes_a_path_an_array_or_a_pil_image(predictor, astronaut_png):
    from PIL import Image
    from skimage import data

    from_array = predictor.predict_image(data.astronaut())
    assert from_array and all(isinstance(v, int) for v in from_array[0]["box"])
    for image in (Path(astronaut_png), Image.fromarray(data.astronaut())):
        faces = predictor.predict_image(image)
        assert [f["box"] for f in faces] == [f["box"] for f in from_array], type(image)
        assert [f["label"] for f in faces] == [f["label"] for f in from_array]
    with pytest.raises(PredictError, match="a path, a numpy array or a PIL image, not list"):
        predictor.predict_image([1, 2, 3])


def test_annotate_image_returns_the_faces_and_the_drawn_picture(predictor):
    from skimage import data

    image = data.astronaut()
    faces, drawn = predictor.annotate_image(image)
    assert faces == [] or [f["box"] for f in faces] == [f["box"] for f in predictor.predict_image(image)]
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    changed = np.any(drawn != image, axis=2)
    x, y, w, h = faces[0]["box"]
    assert changed[y + h // 2, max(0, x - 2):x + 3].any()                  # the box's left side
    assert not changed[y + h // 2 + 5:y + h - 5, x + 5:x + w - 5].any()      # its inside is the photograph
    np.testing.assert_array_equal(image, data.astronaut())                 # the input is left as it was
