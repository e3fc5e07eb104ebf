"""Fixtures: real run directories written by run_builder (plan.json, predictions, histories,
landmarks of both transfer stages, prepared crops, analysis files)."""
import functools

import pytest

from run_builder import build_run


@pytest.fixture(scope="session")
def complexity_report():
    """The real models.describe() output: the exact structure the orchestrator writes, for the
    paper's class counts (7, 8) and this suite's (3 for SFEW, 4 for CK+)."""
    from partfer.models.describe import describe
    return describe(n_classes_list=(3, 4, 7, 8))


@pytest.fixture
def make_run(tmp_path):
    """Builder of run directories inside this test's tmp_path (see build_run's options)."""
    return functools.partial(build_run, tmp_path)


@pytest.fixture(scope="session")
def shrunk_run(tmp_path_factory, complexity_report):
    """The complete run with shrunk settings, shared by the whole suite: tests never change its
    inputs, only (re)write its outputs, which are identical on every rebuild. CK+ and SFEW trained,
    SFEW tested on CK+ and JAFFE, both stages' landmarks, prepared crops, complexity.json and a
    CK+ Grad-CAM npz."""
    return build_run(tmp_path_factory.mktemp("shrunk"), cross=("ckplus", "jaffe"), landmarks=True,
                     prepared=True, complexity=complexity_report, gradcam=("ckplus",))
