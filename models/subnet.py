"""The plain, one-model network: feature extractor + optional landmark head + optional classifier.

State-dict keys (stable; a checkpoint may carry either head or both):
  extractor.blocks.{0..3}.conv{1,2}.{weight,bias}
  extractor.blocks.{0..3}.bn{1,2}.{weight,bias,running_mean,running_var,num_batches_tracked}
  landmark_head.fc{1,2}.{weight,bias}            (when n_landmark_outputs is set)
  classifier.fc{1,2,3}.{weight,bias}             (when n_classes is set)
Linear weights use torch's (out, in) layout.
"""
from __future__ import annotations

import torch
from torch import nn

from partfer.models import stages
from partfer.models.config import ArchConfig, ArchitectureError
from partfer.models.extractor import FeatureExtractor
from partfer.models.heads import ClassifierHead, LandmarkHead
from partfer.models.init import draw_seeds, part_generators
from partfer.models.options import ExecOptions


class SubNetwork(nn.Module):
    """One model of an ensemble. Input (B, in_channels or 1, H, W); 1 channel = grayscale path."""

    def __init__(self, n_classes: int | None, n_landmark_outputs: int | None, *,
                 widths: tuple[int, ...] = (16, 32, 64, 128), in_channels: int = 3, conv_kernel: int = 3,
                 pool_kernel: int = 3, pool_stride: int = 2, pool_padding: int | str = 0,
                 bn_eps: float = 1e-3, bn_momentum: float = 0.01,
                 head_hidden: int = 128, head_activation: str = "none",
                 seed: int | torch.Generator | None = None, options: ExecOptions | None = None):
        super().__init__()
        self.arch = ArchConfig(widths=widths, in_channels=in_channels, conv_kernel=conv_kernel,
                               pool_kernel=pool_kernel, pool_stride=pool_stride, pool_padding=pool_padding,
                               bn_eps=bn_eps, bn_momentum=bn_momentum,
                               head_hidden=head_hidden, head_activation=head_activation)
        for name, value in (("n_classes", n_classes), ("n_landmark_outputs", n_landmark_outputs)):
            if value is not None and value < 1:
                raise ArchitectureError(f"{name} must be >= 1 or None, got {value}")
        self.n_classes = n_classes
        self.n_landmark_outputs = n_landmark_outputs
        f = self.arch.feature_dim
        self.extractor = FeatureExtractor.from_arch(self.arch, options=options)
        self.landmark_head = (None if n_landmark_outputs is None else
                              LandmarkHead(n_landmark_outputs, head_hidden, head_activation, in_features=f))
        self.classifier = (None if n_classes is None else
                           ClassifierHead(n_classes, head_hidden, head_activation, in_features=f))
        self.init_(seed)

    @classmethod
    def from_arch(cls, n_classes: int | None, n_landmark_outputs: int | None, arch: ArchConfig,
                  seed: int | torch.Generator | None = None, *,
                  options: ExecOptions | None = None) -> "SubNetwork":
        return cls(n_classes, n_landmark_outputs, seed=seed, options=options, **arch.to_dict())

    @property
    def options(self) -> ExecOptions:
        """How the network computes (models.options); fixed at construction."""
        return self.extractor.options

    @torch.no_grad()
    def init_(self, seed: int | torch.Generator | None = None) -> "SubNetwork":
        """He/Glorot initialisation from one model seed (a generator or None draws the seed)."""
        if seed is None or isinstance(seed, torch.Generator):
            seed = draw_seeds(1, seed)[0]
        gens = part_generators(int(seed))
        self.extractor.reset_model_(0, gens["extractor"])
        if self.landmark_head is not None:
            self.landmark_head.reset_(gens["landmark_head"])
        if self.classifier is not None:
            self.classifier.reset_(gens["classifier"])
        return self

    def _need(self, part: str) -> nn.Module:
        module = getattr(self, part)
        if module is None:
            raise ArchitectureError(f"this SubNetwork has no {part}")
        return module

    def features(self, x: torch.Tensor, return_maps: bool = False):
        """(B, 128) features; with return_maps also the last block's activation (B, 128, h, w)."""
        return self.extractor(x, return_maps=return_maps)

    def classify(self, x: torch.Tensor, return_maps: bool = False):
        """(B, C) logits; with return_maps, (logits, last block activation)."""
        head = self._need("classifier")
        feats, maps = self.extractor(x, return_maps=True)
        logits = head(feats)
        return (logits, maps) if return_maps else logits

    def landmarks(self, x: torch.Tensor, return_maps: bool = False):
        """(B, n_landmark_outputs) coordinates; with return_maps, (coords, last block activation)."""
        head = self._need("landmark_head")
        feats, maps = self.extractor(x, return_maps=True)
        coords = head(feats)
        return (coords, maps) if return_maps else coords

    def forward(self, x: torch.Tensor, output: str = "logits"):
        """Dispatch for torch.compile / hooks: output in {"features", "logits", "landmarks"}."""
        if output == "features":
            return self.features(x)
        if output == "logits":
            return self.classify(x)
        if output == "landmarks":
            return self.landmarks(x)
        raise ValueError(f"output must be features, logits or landmarks, got {output!r}")

    def trainable_parameters(self, stage: str) -> list[nn.Parameter]:
        return stages.trainable_parameters(self, stage)

    def set_stage_mode(self, stage: str, frozen_bn: bool = False) -> None:
        stages.set_stage_mode(self, stage, frozen_bn)
