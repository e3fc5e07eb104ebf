"""Process-wide test settings (applied before any test module imports torch or Triton), the
suite's markers' effects and the one in-process Ray that the whole test run shares."""
import os

# The fused BatchNorm kernels (models/kernels/fused_bn.py) are Triton kernels: on a machine without a GPU
# they run in Triton's interpreter, which must be chosen before Triton is first imported.
os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest  # noqa: E402  (after the environment above)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks train fastest on one thread; two threads spin badly on a busy 2-core machine.
    A module asks for it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    """A test marked `triton` is skipped where Triton cannot run (skips.needs_triton); a test
    that uses the shared Ray, itself or through a fixture (tiny_prepared...), is marked `ray`."""
    marked = [item for item in items if item.get_closest_marker("triton")]
    if marked:
        from skips import needs_triton
        for item in marked:
            item.add_marker(needs_triton)
    for item in items:
        if "shared_ray" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="session")
def shared_ray():
    """One real local Ray (2 CPUs, no dashboard) for every test of the run that uses Ray in this
    process, started on first use and shut down at the end: starting one costs seconds, so
    modules do not start their own. A test that needs its own cluster starts a `ray start` head
    (tests/local_ray.py) or runs the command line in a child process; none may call
    ray.shutdown(). address="local": never join a cluster that happens to run on the machine."""
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"      # Ray turns token auth on for local clusters
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray
    if started:
        ray.shutdown()
