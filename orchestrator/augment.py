"""Random affine augmentation of image batches and their landmarks, on whatever device holds them.

One transform per sample (rotation, shear, translation, horizontal flip) is applied to the image
with grid_sample and to its landmarks with the same matrix; a flipped sample's landmark indices are
permuted (left eye <-> right eye ...), or the network would learn mirrored targets.
Coordinates are normalised to [-1, 1] as affine_grid uses them.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from data_prep.ibug68 import FLIP_PERMUTATION


@dataclass(frozen=True)
class AugmentSettings:
    hflip: bool = True
    rotation_deg: float = 15.0
    shift: float = 0.05          # fraction of the image side
    shear: float = 0.05          # shear factor (tan of the shear angle)

    @classmethod
    def from_config(cls, cfg: dict) -> "AugmentSettings":
        return cls(**{k: cfg[k] for k in ("hflip", "rotation_deg", "shift", "shear") if k in cfg})


def _uniform(n: int, bound: float, generator: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=device) * 2 - 1) * bound


def random_transforms(n: int, settings: AugmentSettings, generator: torch.Generator,
                      device) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward affine maps (n, 2, 3) taking source coordinates to augmented ones, and flip flags."""
    angle = _uniform(n, math.radians(settings.rotation_deg), generator, device)
    shear = _uniform(n, settings.shear, generator, device)
    shift = _uniform(2 * n, 2 * settings.shift, generator, device).view(n, 2)
    if settings.hflip:
        flipped = torch.rand(n, generator=generator, device=device) < 0.5
    else:
        flipped = torch.zeros(n, dtype=torch.bool, device=device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    shear_m = torch.eye(2, device=device).repeat(n, 1, 1)
    shear_m[:, 0, 1] = shear
    flip_m = torch.eye(2, device=device).repeat(n, 1, 1)
    flip_m[:, 0, 0] = torch.where(flipped, -1.0, 1.0)
    linear = rot @ shear_m @ flip_m
    return torch.cat([linear, shift.unsqueeze(-1)], dim=-1), flipped


def _inverse_2x2(m: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of (n, 2, 2) matrices. torch.linalg.inv checks for singular input on the
    host, a device synchronisation every training step; ours (rotation x shear x flip) have
    determinant +-1 and never need that check."""
    a, b, c, d = m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1]
    det = a * d - b * c
    return torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / det[:, None, None]


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """F.affine_grid(theta, (n, C, height, width), align_corners=False), computed by broadcasting:
    each output coordinate is two multiply-adds of the pixel centres. F.affine_grid multiplies a
    (height * width, 3) base grid by each (3, 2) theta as a batched GEMM, which on an H200 ran as
    a 1.9 ms fp32 GEMM per 1,600-image step (BENCHMARKS.md); this writes the grid once."""
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1
    t = theta[:, :, None, None, :]                                      # (n, 2, 1, 1, 3)
    grid = t[..., 0] * xs + (t[..., 1] * ys[:, None] + t[..., 2])       # (n, 2, height, width)
    return grid.permute(0, 2, 3, 1)


def sampling_maps(forward: torch.Tensor) -> torch.Tensor:
    """The (n, 2, 3) maps grid_sample needs: for each OUTPUT pixel, where to read in the input
    (the inverse of each forward map)."""
    linear, shift = forward[:, :, :2], forward[:, :, 2:]
    inverse = _inverse_2x2(linear)
    return torch.cat([inverse, -inverse @ shift], dim=-1)


def warp_images(images: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """Images (n, C, H, W) float warped by the forward maps: bilinear, border padding."""
    grid = affine_grid(sampling_maps(forward).to(images.dtype), images.shape[2], images.shape[3])
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def move_landmarks(landmarks: torch.Tensor, forward: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    """Landmarks (n, 68, 2) in [0, 1] moved by the forward maps; a flipped sample's points are
    re-indexed so that index i still names the same facial point."""
    linear, shift = forward[:, :, :2], forward[:, :, 2:]
    pts = landmarks * 2 - 1
    moved = (pts @ linear.transpose(1, 2) + shift.transpose(1, 2) + 1) / 2
    return torch.where(flipped[:, None, None], moved[:, _flip_permutation(moved.device)], moved)


@functools.lru_cache(maxsize=None)
def _flip_permutation(device: torch.device) -> torch.Tensor:
    """FLIP_PERMUTATION on a device, copied there once: a copy from host memory at every step
    waits for the GPU's queue to drain."""
    return torch.as_tensor(FLIP_PERMUTATION, device=device)


def normalise_pixels(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1, 1], as (x / 255 - 0.5) * 2."""
    return images_uint8.float() * (2.0 / 255.0) - 1.0
