"""Keras-style initialisers: bounds, fans, and that a draw into a view equals a draw into a tensor."""
from __future__ import annotations

import math

import torch

from partfer.models.init import conv_fans, glorot_uniform_, he_uniform_, part_generators


def test_bounds_and_fans():
    assert conv_fans(16, 32, 3) == (144, 288)
    w = he_uniform_(torch.empty(2000, 10), fan_in=6, generator=torch.Generator().manual_seed(0))
    assert w.abs().max() <= 1.0 and w.abs().max() > 0.99            # sqrt(6/6) = 1
    w = glorot_uniform_(torch.empty(500, 40), 10, 14, torch.Generator().manual_seed(0))
    bound = math.sqrt(6 / 24)
    assert w.abs().max() <= bound and w.abs().max() > 0.98 * bound


def test_draw_into_transposed_slice_matches_plain_tensor():
    plain = glorot_uniform_(torch.empty(5, 3), 3, 5, torch.Generator().manual_seed(9))
    packed = torch.zeros(2, 3, 8)              # (M, in, out_max) layout
    glorot_uniform_(packed[1, :, :5].T, 3, 5, torch.Generator().manual_seed(9))
    assert torch.equal(packed[1, :, :5].T, plain)
    assert torch.all(packed[0] == 0) and torch.all(packed[1, :, 5:] == 0)


def test_part_generators_are_independent_and_reproducible():
    a, b = part_generators(3), part_generators(3)
    draws = {k: torch.rand(4, generator=g) for k, g in a.items()}
    assert all(torch.equal(draws[k], torch.rand(4, generator=g)) for k, g in b.items())
    assert not torch.equal(draws["extractor"], draws["classifier"])
