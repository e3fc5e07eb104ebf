"""Fixtures: real run directories written by run_builder (plan.json, predictions, histories)."""
import functools

import pytest

from run_builder import build_run


@pytest.fixture
def make_run(tmp_path):
    """Builder of run directories inside this test's tmp_path (see build_run's options)."""
    return functools.partial(build_run, tmp_path)


@pytest.fixture(scope="module")
def shrunk_run(tmp_path_factory):
    """The complete two-data-set run with shrunk settings, shared read-only by a module."""
    return build_run(tmp_path_factory.mktemp("shrunk"))
