"""Shared helpers for the models tests."""
from __future__ import annotations

import copy

import pytest
import torch

from models.packed import PackedNetwork


def packed_grads_as_plain(packed: PackedNetwork, i: int) -> dict[str, torch.Tensor]:
    """Model i's gradients in the plain SubNetwork's naming and layout.

    A copy of the network whose parameters hold the gradients is unpacked with model_state, so
    the mapping under test (model_state) is the same one checkpoints use.
    """
    holder = copy.deepcopy(packed)
    with torch.no_grad():
        for (name, p), (_, q) in zip(packed.named_parameters(), holder.named_parameters()):
            q.copy_(p.grad if p.grad is not None else torch.zeros_like(p))
    params = {name for name, _ in packed.named_parameters()}
    return {k: v for k, v in holder.model_state(i).items() if k in params}


@pytest.fixture
def grads_as_plain():
    return packed_grads_as_plain
