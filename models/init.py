"""Keras-style initialisers that take explicit fan values and a generator.

Explicit fans (instead of reading them off the tensor) let the packed network initialise one
model's slice of a grouped/batched tensor exactly as the plain network initialises its own
tensor: every draw goes into a fresh CPU float32 tensor of the PLAIN shape, in the PLAIN order,
and is then copied into the destination (which may be a slice, a transposed view, or on a GPU).
"""
from __future__ import annotations

import math

import torch

# Order in which one model's parts consume random numbers; each part has its own stream so that
# a network with only some of the heads draws the same values for the parts it does have.
PARTS = ("extractor", "landmark_head", "classifier")


def he_uniform_bound(fan_in: int) -> float:
    """Keras he_uniform limit: sqrt(6 / fan_in)."""
    return math.sqrt(6.0 / fan_in)


def glorot_uniform_bound(fan_in: int, fan_out: int) -> float:
    """Keras glorot_uniform limit: sqrt(6 / (fan_in + fan_out))."""
    return math.sqrt(6.0 / (fan_in + fan_out))


def conv_fans(in_channels: int, out_channels: int, kernel: int) -> tuple[int, int]:
    """(fan_in, fan_out) of a 2-D convolution as Keras counts them (receptive field x channels)."""
    field = kernel * kernel
    return in_channels * field, out_channels * field


def draw_uniform(shape: torch.Size | tuple[int, ...], bound: float,
                 generator: torch.Generator | None) -> torch.Tensor:
    """U(-bound, bound) samples of `shape`, drawn on the CPU in float32 (device-independent)."""
    out = torch.empty(tuple(shape), dtype=torch.float32)
    out.uniform_(-bound, bound, generator=generator)
    return out


@torch.no_grad()
def he_uniform_(tensor: torch.Tensor, fan_in: int, generator: torch.Generator | None) -> torch.Tensor:
    """Fill `tensor` (any view) from U(+-sqrt(6/fan_in)); returns it."""
    tensor.copy_(draw_uniform(tensor.shape, he_uniform_bound(fan_in), generator))
    return tensor


@torch.no_grad()
def glorot_uniform_(tensor: torch.Tensor, fan_in: int, fan_out: int,
                    generator: torch.Generator | None) -> torch.Tensor:
    """Fill `tensor` (any view) from U(+-sqrt(6/(fan_in+fan_out))); returns it."""
    tensor.copy_(draw_uniform(tensor.shape, glorot_uniform_bound(fan_in, fan_out), generator))
    return tensor


@torch.no_grad()
def constant_(tensor: torch.Tensor, value: float) -> torch.Tensor:
    """Fill with a constant (zero biases, unit BN scales); works on views."""
    tensor.fill_(value)
    return tensor


def part_generators(seed: int) -> dict[str, torch.Generator]:
    """One independent CPU generator per part of a model, all derived from one model seed."""
    master = torch.Generator().manual_seed(int(seed))
    part_seeds = torch.randint(0, 2**62, (len(PARTS),), generator=master, dtype=torch.int64)
    return {part: torch.Generator().manual_seed(int(s)) for part, s in zip(PARTS, part_seeds)}


def draw_seeds(n: int, generator: torch.Generator | None = None) -> list[int]:
    """n model seeds from `generator` (torch's global RNG when None, so torch.manual_seed governs)."""
    return [int(s) for s in torch.randint(0, 2**62, (n,), generator=generator, dtype=torch.int64)]
