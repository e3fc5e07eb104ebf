"""A real exported model directory of untrained sub-networks (what they predict does not matter to
the tests using it), whose preprocessing uses no detector: every image is one face."""
from __future__ import annotations

from pathlib import Path

import pytest

from partfer.models.config import ArchConfig
from partfer.orchestrator.storage.model_dir import MemberSpec, ModelSpec, build_member, write_model_dir


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory) -> Path:
    member = MemberSpec(name="mouth", member="mouth", fold=0, region="mouth", stage="finetune",
                        key="k" * 16, source="models/x")
    spec = ModelSpec(dataset="jaffe", network="el", classes=["happy", "sad"], members=[member], folds=[0],
                     image_size=32, architecture=ArchConfig(widths=(4, 4, 4, 4)).to_dict(),
                     preprocessing={"detector": "none", "annotator": "dataset", "crop_size": 32})
    return write_model_dir(tmp_path_factory.mktemp("model") / "m", spec, {"mouth": build_member(spec).state_dict()})
