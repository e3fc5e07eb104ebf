"""Real exported model directories of untrained sub-networks (what they predict does not matter to
the tests using them): `untrained_model` uses no detector (every image is one face);
`ssd_model` finds faces with the real SSD, places landmarks with dlib and says, as a demo export
does, that it was trained on synthetic data with a shrunk budget."""
from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from partfer.models.config import ArchConfig
from partfer.orchestrator.storage.model_dir import MemberSpec, ModelSpec, build_member, write_model_dir

DEMO_RUN = {"synthetic": ["jaffe"], "shrunk": True,
            "shrunk_reasons": ["image size 32 instead of 64", "synthetic data (jaffe)"]}
MEMBER_TEST_ACC = 0.375


def write_untrained_model(out: Path, preprocessing: dict, run: dict | None = None,
                          test_acc: float | None = None) -> Path:
    """A model directory as `partfer export` writes it, of one untrained EL part."""
    member = MemberSpec(name="mouth", member="mouth", fold=0, region="mouth", stage="finetune",
                        key="k" * 16, source="models/x", test_acc=test_acc)
    spec = ModelSpec(dataset="jaffe", network="el", classes=["happy", "sad"], members=[member], folds=[0],
                     image_size=32, architecture=ArchConfig(widths=(4, 4, 4, 4)).to_dict(),
                     preprocessing=preprocessing, run=dict(run or {}))
    return write_model_dir(out, spec, {"mouth": build_member(spec).state_dict()})


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory) -> Path:
    return write_untrained_model(tmp_path_factory.mktemp("model") / "m",
                                 {"detector": "none", "annotator": "dataset", "crop_size": 32})


@pytest.fixture(scope="module")
def ssd_model(tmp_path_factory) -> Path:
    return write_untrained_model(tmp_path_factory.mktemp("model") / "ssd",
                                 {"detector": "ssd", "annotator": "dlib", "crop_size": 96},
                                 run=DEMO_RUN, test_acc=MEMBER_TEST_ACC)


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory) -> Path:
    """scikit-image's astronaut photograph (one frontal face) as a PNG file."""
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path
