"""Process-wide test settings, applied before any test module imports torch or Triton."""
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
