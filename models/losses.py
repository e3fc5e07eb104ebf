"""Per-model losses of a packed network, each equal to the plain network's loss on its own batch.

They return one loss per model, shape (M,). Summing them gives each model's slice exactly the
gradient its plain loss would (the models share no parameters); multiplying by a (M,) 0/1 vector
of active models zeroes the gradient of stopped ones. Means use each model's own count of real
entries, so padded landmark outputs and padded samples change nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _loss_dtype(t: torch.Tensor) -> torch.dtype:
    """At least float32 (bf16/fp16 outputs are summed in float32), float64 kept."""
    return torch.promote_types(t.dtype, torch.float32)


def _sample_weights(shape: tuple[int, int], sample_mask: torch.Tensor | None,
                    like: torch.Tensor) -> torch.Tensor:
    if sample_mask is None:
        return torch.ones(shape, dtype=_loss_dtype(like), device=like.device)
    if tuple(sample_mask.shape) != shape:
        raise ValueError(f"sample_mask must have shape {shape}, got {tuple(sample_mask.shape)}")
    return sample_mask.to(dtype=_loss_dtype(like))     # on like's device (no copy inside a step)


def packed_l1_loss(pred: torch.Tensor, target: torch.Tensor, output_mask: torch.Tensor,
                   sample_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error per model: pred/target (B, M, Lmax), output_mask (M, Lmax) -> (M,).

    Model m's value is F.l1_loss over its first L_m outputs of its real samples, i.e. the plain
    network's L1. Targets in padded positions may hold anything (they are masked out).
    """
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"pred and target must both be (B, M, L), got {tuple(pred.shape)} and {tuple(target.shape)}")
    b, m, _ = pred.shape
    weights = _sample_weights((b, m), sample_mask, pred)
    dtype = _loss_dtype(pred)
    cells = output_mask.to(dtype)[None] * weights[:, :, None]                   # (B, M, L)
    err = (pred.to(dtype) - target.to(dtype)).abs() * cells
    return err.sum(dim=(0, 2)) / cells.sum(dim=(0, 2)).clamp_min(1.0)


def packed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                         sample_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy per model: logits (B, M, C), integer labels (B, M) -> (M,)."""
    if logits.dim() != 3 or tuple(labels.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"logits must be (B, M, C) and labels (B, M), got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    b, m, c = logits.shape
    per_sample = F.cross_entropy(logits.to(_loss_dtype(logits)).reshape(b * m, c), labels.reshape(b * m),
                                 reduction="none").view(b, m)
    weights = _sample_weights((b, m), sample_mask, logits)
    return (per_sample * weights).sum(dim=0) / weights.sum(dim=0).clamp_min(1.0)
