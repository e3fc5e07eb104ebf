"""What a test needs that this machine may lack, said once for the whole suite: a test (or a
module, through `pytestmark`) that cannot run here is skipped with the reason and the fix.

Tests marked `triton` get `needs_triton` from tests/conftest.py; the others import from here."""
from __future__ import annotations

import pytest


def triton_runs() -> bool:
    """Whether the Triton kernels can run on a CPU tensor here (in Triton's interpreter, which
    tests/conftest.py selects before Triton is imported). Only whether Triton can run at all:
    a kernel that fails its self-test must fail its tests, not skip them."""
    import torch

    from partfer.models.kernels import fused_bn
    return fused_bn.runs_on(torch.zeros(1))


def chromium_found() -> bool:
    from tests.results import layout_check
    return layout_check.find_chromium() is not None


TRITON_REASON = "needs Triton (on a CPU it runs in its interpreter: TRITON_INTERPRET=1; CUDA builds of torch ship it)"

needs_triton = pytest.mark.skipif(not triton_runs(), reason=TRITON_REASON)
needs_chromium = pytest.mark.skipif(
    not chromium_found(),
    reason="no headless Chromium on PATH (apt-get install -y chromium; .ci/run installs it)")
