"""Parameter, FLOP and storage counts by the paper's Section IV-E rules.

Parameters: every parameter plus BN's running mean and variance (Keras counts those 4 per-channel
values as parameters; that is how the paper gets 295,440 for the extractor); BN's
num_batches_tracked counter is not a parameter.

FLOPs, literal formulas 7-9 applied to the layers actually executed (read off forward hooks):
  conv  = 2 * Ci * k^2 * Co * W * H      (W, H of the conv's INPUT map; Ci per group)
  dense = 2 * I * O
  pool  = (W / stride) * (H / stride) * Co   (W, H of the pool's INPUT map; no rounding)
BN (folded into the conv), ReLU and global pooling are not counted, as in the paper.

Why our count (160x160x3, C = 8) is not the paper's 0.555: with 'same' (padding 1) 3x3 convs and
the authors' Keras 'same' 3x3/2 max-pools (pool_padding "same", configs/paper.yaml) the maps are
160, 80, 40, 20 wide and the total is 0.671 G; with unpadded pools (pool_padding 0, ArchConfig's
default) they are 160, 79, 39, 19 and the total 0.641 G. No reading of the formulas on the
described architecture reproduces 0.555 exactly; the other conventions we tried at 160x160
(scratch computation) give: Keras-default 'valid' (unpadded) convs + 'same' pools 0.550
(the closest); 'valid' convs + 'valid' pools 0.512; a 1-channel first conv lowers each by 0.015;
counting the pool on its output map changes the total by < 0.0002. The paper most likely used
unpadded convolutions or a slightly different bookkeeping; we report the literal count on the
network we build beside the paper's figure. The conv share (99.96 % here) matches the paper's
"99.98 %" to within the pooling convention.

Storage: float32 parameters * 4 bytes. 329,496 * 4 B = 1.32 MB per sub-network, not the paper's
6.3 MB. The paper's figure equals the FIVE-model ensemble: 1,647,480 * 4 B = 6,589,920 B = 6.28 MiB,
so "6.3 MB" is the ensemble in MiB and "31.5 MB" (5 x 6.3) counts the five models twice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from partfer.models.pooling import MaxPool

BYTES_PER_FLOAT32 = 4
POOLS = (nn.MaxPool2d, MaxPool)      # the extractor's (any padding) and torch's
SHARED_BUFFER_SUFFIX = "num_batches_tracked"


def count_parameters(module: nn.Module) -> int:
    """Parameters + BN running statistics (the paper's / Keras' 'total params')."""
    return sum(t.numel() for name, t in module.state_dict().items() if not name.endswith(SHARED_BUFFER_SUFFIX))


def storage_bytes(n_parameters: int, bytes_per_value: int = BYTES_PER_FLOAT32) -> int:
    return n_parameters * bytes_per_value


@dataclass(frozen=True)
class FlopCount:
    conv: float
    dense: float
    pool: float

    @property
    def total(self) -> float:
        return self.conv + self.dense + self.pool

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "total": self.total}


def _conv_flops(module: nn.Conv2d, x: torch.Tensor) -> float:
    ci = module.in_channels // module.groups
    kh, kw = module.kernel_size
    return 2.0 * ci * kh * kw * module.out_channels * x.shape[-1] * x.shape[-2]


def _pool_flops(module: nn.MaxPool2d | MaxPool, x: torch.Tensor) -> float:
    stride = module.stride if isinstance(module.stride, tuple) else (module.stride, module.stride)
    return (x.shape[-1] / stride[1]) * (x.shape[-2] / stride[0]) * x.shape[-3]


@torch.no_grad()
def count_flops(net: nn.Module, image_size: int, output: str = "logits") -> FlopCount:
    """FLOPs of one inference of a plain SubNetwork on a 3-channel square image (batch 1).

    `output` picks the head: "logits" (classifier, the paper's case), "landmarks" or "features".
    A 3-channel input is used so the first conv runs as a module (and is counted as the paper does).
    """
    totals = {"conv": 0.0, "dense": 0.0, "pool": 0.0}

    def hook(module: nn.Module, inputs: tuple, _output) -> None:
        x = inputs[0]
        if isinstance(module, nn.Conv2d):
            totals["conv"] += _conv_flops(module, x)
        elif isinstance(module, nn.Linear):
            totals["dense"] += 2.0 * module.in_features * module.out_features
        elif isinstance(module, POOLS):
            totals["pool"] += _pool_flops(module, x)

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear, *POOLS))]
    was_training = net.training
    try:
        net.eval()
        param = next(net.parameters())
        x = torch.zeros(1, net.arch.in_channels, image_size, image_size, device=param.device, dtype=param.dtype)
        net(x, output=output)
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    return FlopCount(**totals)
