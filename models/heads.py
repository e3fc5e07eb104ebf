"""The plain (one-model) output heads: landmark regression and expression classification.

Both are stacks of dense layers on the 128-D feature vector, Glorot-uniform weights, zero biases.
The classifier returns LOGITS: softmax belongs to the loss (cross-entropy) and to inference
(the ensemble sums softmax vectors). The authors' notebook puts no activation between the dense
layers (`activation="none"`, which makes each head an affine map); "relu" is the usual variant.
State-dict keys: fc1.*, fc2.* (landmark head); fc1.*, fc2.*, fc3.* (classifier).
"""
from __future__ import annotations

import torch
from torch import nn

from partfer.models.config import HEAD_ACTIVATIONS, ArchitectureError
from partfer.models.init import constant_, glorot_uniform_


def make_activation(name: str) -> nn.Module:
    """The module between two dense layers of a head."""
    if name == "none":
        return nn.Identity()
    if name == "relu":
        return nn.ReLU()
    raise ArchitectureError(f"head activation must be one of {HEAD_ACTIVATIONS}, got {name!r}")


class DenseStack(nn.Module):
    """fc1 -> act -> fc2 [-> act -> fc3 ...]; the last layer has no activation."""

    def __init__(self, sizes: list[int], activation: str):
        super().__init__()
        if len(sizes) < 2 or min(sizes) < 1:
            raise ArchitectureError(f"dense layer sizes must be >= 1, got {sizes}")
        self.n_layers = len(sizes) - 1
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            self.add_module(f"fc{i}", nn.Linear(a, b))
        self.act = make_activation(activation)

    def layers(self) -> list[nn.Linear]:
        return [getattr(self, f"fc{i}") for i in range(1, self.n_layers + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = self.layers()
        for layer in layers[:-1]:
            x = self.act(layer(x))
        return layers[-1](x)

    @torch.no_grad()
    def reset_(self, generator: torch.Generator | None) -> None:
        """Glorot-uniform weights and zero biases, layer by layer in order."""
        for layer in self.layers():
            glorot_uniform_(layer.weight, layer.in_features, layer.out_features, generator)
            constant_(layer.bias, 0.0)


class LandmarkHead(DenseStack):
    """Dense(in -> hidden) -> [activation] -> Dense(hidden -> n_outputs): 2k coordinates for k points."""

    def __init__(self, n_outputs: int, hidden: int = 128, activation: str = "none", in_features: int = 128):
        super().__init__([in_features, hidden, n_outputs], activation)
        self.n_outputs = n_outputs


class ClassifierHead(DenseStack):
    """Dense(in -> hidden) -> Dense(hidden -> hidden) -> Dense(hidden -> C), returning logits."""

    def __init__(self, n_classes: int, hidden: int = 128, activation: str = "none", in_features: int = 128):
        super().__init__([in_features, hidden, hidden, n_classes], activation)
        self.n_classes = n_classes
