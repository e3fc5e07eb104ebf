"""Heads of M models computed as batched matmuls: weight (M, in, out), bias (M, out), torch.baddbmm.

Model m's dense layer is y = x @ weight[m] + bias[m], i.e. weight[m] is the TRANSPOSE of the plain
nn.Linear weight. When models have different output sizes (landmark heads: 18 for the nose ..
136 for the whole face) the last layer is padded to the largest size and `out_mask` (M, out) marks
the real outputs. The layer multiplies its output by the mask, so padded outputs are exactly 0 and
the padded weights/biases receive exactly zero gradient whatever the loss does with them; a loss
must still exclude them from its average (see models.losses.packed_l1_loss).
"""
from __future__ import annotations

import torch
from torch import nn

from partfer.models.config import ArchitectureError
from partfer.models.heads import make_activation
from partfer.models.init import constant_, glorot_uniform_


class PackedLinear(nn.Module):
    """M independent dense layers; input (M, B, in) -> output (M, B, max(out_sizes))."""

    def __init__(self, n_models: int, in_features: int, out_sizes: list[int]):
        super().__init__()
        if len(out_sizes) != n_models or min(out_sizes) < 1 or in_features < 1:
            raise ArchitectureError(f"need {n_models} positive output sizes, got {out_sizes}")
        self.n_models = n_models
        self.in_features = in_features
        self.out_sizes = [int(o) for o in out_sizes]
        out_max = max(self.out_sizes)
        self.weight = nn.Parameter(torch.zeros(n_models, in_features, out_max))
        self.bias = nn.Parameter(torch.zeros(n_models, out_max))
        mask = torch.arange(out_max)[None, :] < torch.tensor(self.out_sizes)[:, None]
        # Not persistent: it is derived from out_sizes, and plain checkpoints have no such entry.
        self.register_buffer("out_mask", mask, persistent=False)
        self.ragged = len(set(self.out_sizes)) > 1

    def forward(self, x: torch.Tensor, models: torch.Tensor | None = None) -> torch.Tensor:
        """x (M, B, in), or (len(models), B, in) for the models chosen by a 1-D index tensor."""
        if models is None:
            weight, bias, mask = self.weight, self.bias, self.out_mask
        else:
            weight, bias, mask = self.weight[models], self.bias[models], self.out_mask[models]
        y = torch.baddbmm(bias.unsqueeze(1), x, weight)
        if self.ragged:
            y = y * mask.unsqueeze(1).to(y.dtype)
        return y

    def plain_weight(self, m: int) -> torch.Tensor:
        """Model m's weight as a view in nn.Linear's (out, in) layout (padding excluded)."""
        return self.weight[m, :, : self.out_sizes[m]].T

    def plain_bias(self, m: int) -> torch.Tensor:
        return self.bias[m, : self.out_sizes[m]]

    @torch.no_grad()
    def reset_model_(self, m: int, generator: torch.Generator | None) -> None:
        """Glorot-uniform as the plain layer draws it (same shape, same order), zero bias and padding."""
        constant_(self.weight[m], 0.0)
        constant_(self.bias[m], 0.0)
        glorot_uniform_(self.plain_weight(m), self.in_features, self.out_sizes[m], generator)


class PackedDenseStack(nn.Module):
    """M copies of a plain DenseStack (fc1 -> act -> fc2 ...), same layer names: fc1, fc2, ..."""

    def __init__(self, n_models: int, sizes: list[int], last_sizes: list[int] | None, activation: str):
        super().__init__()
        if len(sizes) < 2:
            raise ArchitectureError(f"a dense stack needs at least 2 sizes, got {sizes}")
        self.n_layers = len(sizes) - 1
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            outs = last_sizes if (i == self.n_layers and last_sizes is not None) else [b] * n_models
            self.add_module(f"fc{i}", PackedLinear(n_models, a, outs))
        self.act = make_activation(activation)
        # The output frame (set_output_frame_): none unless a landmark stage trains in
        # standardized units. Not persistent: checkpoints always hold the folded, crop-unit layer.
        self.register_buffer("out_center", None, persistent=False)
        self.register_buffer("out_scale", None, persistent=False)

    def layers(self) -> list[PackedLinear]:
        return [getattr(self, f"fc{i}") for i in range(1, self.n_layers + 1)]

    def forward(self, x: torch.Tensor, models: torch.Tensor | None = None) -> torch.Tensor:
        layers = self.layers()
        for layer in layers[:-1]:
            x = self.act(layer(x, models))
        y = layers[-1](x, models)
        if self.out_scale is None:
            return y
        center, scale = (self.out_center, self.out_scale) if models is None else \
            (self.out_center[models], self.out_scale[models])
        return torch.addcmul(center.unsqueeze(1), y, scale[:, None, None])

    @torch.no_grad()
    def set_output_frame_(self, center: torch.Tensor, scale: torch.Tensor) -> None:
        """Read model m's last layer in a frame of its own: output = center[m] + scale[m] * layer.

        center (M, out_max), zero at padded outputs; scale (M,) > 0. The layer's own weights then
        live in units of `scale` around `center` (a landmark stage regressing standardized points:
        orchestrator.training.train); plain_layer folds the frame back for a checkpoint."""
        last = self.layers()[-1]
        if center.shape != last.bias.shape or scale.shape != (last.n_models,) or not bool((scale > 0).all()):
            raise ValueError(f"an output frame needs center {tuple(last.bias.shape)} and a positive scale "
                             f"({last.n_models},), got {tuple(center.shape)} and {tuple(scale.shape)}")
        self.out_center = (center * last.out_mask).to(last.bias)
        self.out_scale = scale.to(last.bias)

    def plain_layer(self, j: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Model m's layer fc{j} as nn.Linear's (weight (out, in), bias (out,)), copies; the last
        layer with the output frame folded in, so the plain network computes the same points."""
        layer = getattr(self, f"fc{j}")
        weight = layer.plain_weight(m).detach().contiguous().clone()
        bias = layer.plain_bias(m).detach().clone()
        if j == self.n_layers and self.out_scale is not None:
            n = layer.out_sizes[m]
            weight = weight * self.out_scale[m]
            bias = self.out_center[m, :n] + self.out_scale[m] * bias
        return weight, bias

    @property
    def out_mask(self) -> torch.Tensor:
        return self.layers()[-1].out_mask

    @torch.no_grad()
    def reset_model_(self, m: int, generator: torch.Generator | None) -> None:
        for layer in self.layers():
            layer.reset_model_(m, generator)


def packed_landmark_head(n_models: int, out_sizes: list[int], hidden: int, activation: str,
                         in_features: int) -> PackedDenseStack:
    """M landmark heads (in -> hidden -> L_m), padded to max L_m."""
    return PackedDenseStack(n_models, [in_features, hidden, max(out_sizes)], out_sizes, activation)


def packed_classifier_head(n_models: int, n_classes: int, hidden: int, activation: str,
                           in_features: int) -> PackedDenseStack:
    """M classifier heads (in -> hidden -> hidden -> C)."""
    return PackedDenseStack(n_models, [in_features, hidden, hidden, n_classes], None, activation)
