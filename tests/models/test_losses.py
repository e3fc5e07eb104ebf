"""Per-model packed losses equal the plain losses; padding and masked samples change nothing."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from partfer.models.losses import packed_cross_entropy, packed_l1_loss


def test_l1_matches_plain_per_model_and_ignores_padding():
    g = torch.Generator().manual_seed(0)
    sizes = [4, 6]
    pred = torch.rand(5, 2, 6, generator=g)
    target = torch.rand(5, 2, 6, generator=g)
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    losses = packed_l1_loss(pred, target, mask)
    for m, n in enumerate(sizes):
        torch.testing.assert_close(losses[m], F.l1_loss(pred[:, m, :n], target[:, m, :n]))
    target[:, 0, 4:] = 1e6          # garbage in the padding
    torch.testing.assert_close(packed_l1_loss(pred, target, mask), losses)


def test_cross_entropy_matches_plain_and_sample_mask():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 3, 7, generator=g)
    labels = torch.randint(0, 7, (6, 3), generator=g)
    losses = packed_cross_entropy(logits, labels)
    for m in range(3):
        torch.testing.assert_close(losses[m], F.cross_entropy(logits[:, m], labels[:, m]))
    keep = torch.ones(6, 3, dtype=torch.bool)
    keep[4:, 1] = False             # model 1 has only 4 real samples in this batch
    masked = packed_cross_entropy(logits, labels, keep)
    torch.testing.assert_close(masked[1], F.cross_entropy(logits[:4, 1], labels[:4, 1]))
    torch.testing.assert_close(masked[0], losses[0])


def test_shape_errors():
    with pytest.raises(ValueError, match=r"labels \(B, M\), got \(2, 3, 7\) and \(2, 2\)"):
        packed_cross_entropy(torch.zeros(2, 3, 7), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"pred and target .* got \(2, 3, 4\) and \(2, 3, 5\)"):
        packed_l1_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5), torch.ones(3, 4, dtype=torch.bool))
