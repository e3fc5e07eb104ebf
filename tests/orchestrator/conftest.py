"""A tiny real prepared data set (synthetic JAFFE-layout faces through the Ray Data pipeline)."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> str:
    import ray

    from partfer.data_prep.pipeline import PrepRequest, prepare_datasets
    from partfer.data_prep.settings import PrepSettings
    from partfer.data_prep.synth import synthesize

    root = tmp_path_factory.mktemp("synth") / "jaffe"
    synthesize("jaffe", str(root), subjects=4, per_class=3, seed=1, size=96)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False)
    try:
        infos = prepare_datasets(
            [PrepRequest(name="jaffe", layout="jaffe", root=str(root),
                         settings=PrepSettings(detector="none", annotator="dataset"))],
            str(tmp_path_factory.mktemp("store")), progress=False)
    finally:
        if started:
            ray.shutdown()
    return infos["jaffe"].path
