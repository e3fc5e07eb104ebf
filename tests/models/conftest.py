"""Shared helpers for the models tests."""
from __future__ import annotations

import copy

import pytest
import torch

from partfer.models.packed import PackedNetwork


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


def count_autograd_nodes(out: torch.Tensor, name: str) -> int:
    """How many autograd nodes whose type name contains `name` computed out (e.g. each conv the
    Triton kernels ran is one "_GroupedConvBackward")."""
    seen, todo, n = set(), [out.grad_fn], 0
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        n += name in type(node).__name__
        todo.extend(next_fn for next_fn, _ in node.next_functions)
    return n


@pytest.fixture
def autograd_nodes():
    return count_autograd_nodes
