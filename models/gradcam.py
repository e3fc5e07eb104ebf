"""Grad-CAM (paper Section IV-C, Eqs. 5-6) for plain and packed networks, in pure torch.

For class c, the gradient of the class score y^c (the logit, before softmax) with respect to the
last convolutional block's activation A (the models' `return_maps=True` output: after the block's
ReLU, before its max-pool) is global-average-pooled over space into one weight per channel,
alpha_k^c; the map is ReLU(sum_k alpha_k^c A^k), upsampled bilinearly to the input size and scaled
to [0, 1] per map. The paper shows the union of the members' maps for 5-model ensembles: `union`.

The one implementation serves prediction (`partfer predict --gradcam`) and the report's figures.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from partfer.models.packed import PackedNetwork
from partfer.models.subnet import SubNetwork

ClassIndex = int | Sequence[int] | torch.Tensor | None


def _class_index(class_idx: ClassIndex, logits: torch.Tensor) -> torch.Tensor:
    """Index tensor shaped like logits without the class axis; None: each map's own argmax."""
    target = logits.shape[:-1]
    if class_idx is None:
        return logits.detach().argmax(-1)
    idx = torch.as_tensor(class_idx, dtype=torch.long, device=logits.device)
    if idx.dim() == 1 and len(target) == 2:
        idx = idx[:, None]                           # one class per sample, for every member
    try:
        idx = idx.expand(target)
    except RuntimeError:
        raise ValueError(f"class_idx of shape {tuple(idx.shape)} does not fit logits of shape "
                         f"{tuple(logits.shape)}") from None
    n_classes = logits.shape[-1]
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n_classes):
        raise ValueError(f"class_idx out of range for {n_classes} classes: {idx.unique().tolist()}")
    return idx


def _normalise(cams: torch.Tensor) -> torch.Tensor:
    """Min-max scale each map (last two axes) to [0, 1]; a constant map becomes all zeros."""
    flat = cams.flatten(-2)
    lo = flat.min(-1, keepdim=True).values
    span = flat.max(-1, keepdim=True).values - lo
    scaled = torch.where(span > 0, (flat - lo) / span.clamp(min=torch.finfo(flat.dtype).tiny),
                         torch.zeros_like(flat))
    return scaled.view_as(cams)


def _modes(net: nn.Module) -> list[tuple[nn.Module, bool]]:
    return [(m, m.training) for m in net.modules()]


def gradcam(net: SubNetwork | PackedNetwork, x: torch.Tensor, class_idx: ClassIndex = None) -> torch.Tensor:
    """Grad-CAM maps in [0, 1] at the input size.

    SubNetwork:    x (B, C, H, W)    -> maps (B, H, W); class_idx: int, (B,) or None.
    PackedNetwork: x (B, M, C, H, W) -> maps (B, M, H, W); class_idx: int, (B,) (every member
                   the same class), (B, M) (each member its own, e.g. its prediction) or None.
    None means each map's own predicted class. The network runs in eval mode for the call (BN
    with running statistics, so samples stay independent and no statistics change) and its
    modes are restored afterwards; parameters are not touched (gradients are taken with respect
    to the activation only). Not usable inside torch.inference_mode().
    """
    if not isinstance(net, (SubNetwork, PackedNetwork)):
        raise TypeError(f"gradcam needs a SubNetwork or PackedNetwork, got {type(net).__name__}")
    modes = _modes(net)
    net.eval()
    try:
        with torch.enable_grad():
            # The input requires grad so the activation is part of a graph even when every
            # parameter is frozen (requires_grad=False after a head stage, or a loaded export).
            inp = x.detach().requires_grad_(True)
            logits, maps = net.classify(inp, return_maps=True)
            idx = _class_index(class_idx, logits)
            score = logits.gather(-1, idx.unsqueeze(-1)).sum()
            (grads,) = torch.autograd.grad(score, maps)
        # maps: (B, K, h, w) plain or (B, M, K, h, w) packed; the channel axis is -3 either way.
        weights = grads.mean(dim=(-2, -1), keepdim=True)                       # Eq. 5: alpha_k^c
        cams = F.relu((weights * maps).sum(dim=-3)).detach()                   # Eq. 6
    finally:
        for module, training in modes:
            module.training = training
    lead = cams.shape[:-2]
    up = F.interpolate(cams.reshape(-1, 1, *cams.shape[-2:]).float(), size=tuple(x.shape[-2:]),
                       mode="bilinear", align_corners=False)
    return _normalise(up.view(*lead, *x.shape[-2:]))


def union(maps: torch.Tensor | Sequence[torch.Tensor], dim: int = 1) -> torch.Tensor:
    """The ensemble's map: elementwise maximum over its members' maps.

    maps: a (B, M, H, W) tensor from a PackedNetwork (members on `dim`), or a sequence of
    (B, H, W) maps, one per member (stacked on `dim` first).
    """
    if not isinstance(maps, torch.Tensor):
        maps = list(maps)
        if not maps:
            raise ValueError("union needs at least one map")
        maps = torch.stack(maps, dim=dim)
    return maps.amax(dim=dim)
