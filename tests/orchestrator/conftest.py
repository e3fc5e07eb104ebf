"""A tiny real prepared data set (synthetic JAFFE-layout faces through the Ray Data pipeline)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory, shared_ray) -> str:
    from partfer.data_prep.pipeline import PrepRequest, prepare_datasets
    from partfer.data_prep.settings import PrepSettings
    from partfer.data_prep.synth import synthesize

    root = tmp_path_factory.mktemp("synth") / "jaffe"
    synthesize("jaffe", str(root), subjects=4, per_class=3, seed=1, size=96)
    infos = prepare_datasets(
        [PrepRequest(name="jaffe", layout="jaffe", root=str(root),
                     settings=PrepSettings(detector="none", annotator="dataset"))],
        str(tmp_path_factory.mktemp("store")), progress=False)
    return infos["jaffe"].path
