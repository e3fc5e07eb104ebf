"""A pack trained with the fused kernels (Triton's interpreter here) against PyTorch's kernels:
the same parameters, running statistics and eval-mode outputs after a few SGD steps. The same
check runs on a GPU in `bench/train_throughput.py --check`."""
import sys
from pathlib import Path

import pytest
import torch

from partfer.models.kernels import fused_bn

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench.train_throughput import check_training  # noqa: E402

pytestmark = [pytest.mark.triton, pytest.mark.slow]     # packs trained in Triton's interpreter


@pytest.fixture
def few_programs(monkeypatch):
    """Few, large tiles: the interpreter runs a kernel program by program."""
    monkeypatch.setitem(fused_bn.TILES, "rows", 512)
    monkeypatch.setitem(fused_bn.TILES, "stat_programs", 16)
    monkeypatch.setitem(fused_bn.TILES, "rows_per_program", 2048)


def test_fused_pack_trains_like_pytorch_kernels(few_programs):
    result = check_training("cpu", image_size=32, n_models=2, batch=4, steps=3, fuse="on")
    for what, value in result["pad"].items():
        assert value < 1e-4, (what, value)     # float32 rounding: ~1e-6


def test_fused_kernels_read_nothing_back(few_programs):
    # The host code around the kernels (tiles, partial sums, finalize, running statistics, model
    # subsets, split parts) must queue GPU work without waiting for it, as a training step does
    # (tests/orchestrator/training/test_train_step.py); Triton's interpreter itself is not watched.
    from host_reads import HostReads
    from partfer.models.packed import PackedNetwork
    from partfer.models.options import ExecOptions
    net = PackedNetwork(3, 7, None, seeds=[1, 2, 3],
                        options=ExecOptions(fuse="on", grey="pad", split="on")).train()
    gen = torch.Generator().manual_seed(0)
    subset = net.model_index([0, 2])

    def _step(models):
        k = 3 if models is None else len(models)
        x = torch.rand(4, k, 1, 32, 32, generator=gen)
        net.classifier(net.features(x, models=models).transpose(0, 1), models).sum().backward()

    with HostReads("_step") as reads:
        for models in (None, None, subset):
            _step(models)
    assert reads.calls == 3 and not reads.found_after_first, reads.found

