"""Random affine augmentation of image batches and their landmarks, on whatever device holds them.

The transforms are Keras's ImageDataGenerator's (the authors' augmentation), in its units:
rotation and shear angles in degrees, shifts as fractions of the side, fill "nearest" (the
border's pixels, grid_sample's border padding), and a horizontal flip applied after the affine
map. One transform per sample is applied to the image with grid_sample and to its landmarks
with the same matrix; a flipped sample's landmark indices are permuted (left eye <-> right eye
...), or the network would learn mirrored targets. Coordinates are normalised to [-1, 1] as
affine_grid uses them, (x, y) = (column, row).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from partfer.data_prep.ibug68 import FLIP_PERMUTATION
from partfer.orchestrator.training.jobs import AugmentSettings


def _uniform(n: int, bound: float, generator: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=device) * 2 - 1) * bound


def keras_sampling_maps(rotation_deg: torch.Tensor, shift_rows: torch.Tensor, shift_cols: torch.Tensor,
                        shear_deg: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    """Keras's apply_affine_transform followed by its horizontal flip, as (n, 2, 3) maps from
    each output pixel to where it reads in the input, in normalised (x, y) coordinates.

    Keras composes rotation @ shift @ shear about the image centre in (row, column) coordinates:
    rotation [[cos, -sin], [sin, cos]], shear [[1, -sin s], [0, cos s]], shift (tx rows, ty
    columns), and flips the columns of the result. Shifts here are in normalised units (2 = the
    side). Keras's centre is h / 2 + 0.5 in pixel indices, one pixel past the true centre
    ((h - 1) / 2): rotating about the true centre instead differs by a sub-pixel translation.
    """
    theta, shear = torch.deg2rad(rotation_deg), torch.deg2rad(shear_deg)
    cos, sin = torch.cos(theta), torch.sin(theta)
    one, zero = torch.ones_like(theta), torch.zeros_like(theta)
    # (row, col) -> (x, y) = (col, row): a (row, col) matrix [[a, b], [c, d]] becomes [[d, c], [b, a]]
    rot = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    shear_m = torch.stack([torch.stack([torch.cos(shear), zero], -1), torch.stack([-torch.sin(shear), one], -1)], -2)
    flip = torch.stack([torch.stack([torch.where(flipped, -one, one), zero], -1), torch.stack([zero, one], -1)], -2)
    shift = torch.stack([shift_cols, shift_rows], -1).unsqueeze(-1)           # (n, 2, 1) in (x, y)
    linear = rot @ shear_m @ flip
    return torch.cat([linear, rot @ shift], dim=-1)


def random_transforms(n: int, settings: AugmentSettings, generator: torch.Generator,
                      device) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward affine maps (n, 2, 3) taking source coordinates to augmented ones, and flip flags:
    the inverses of Keras's sampling maps for parameters drawn as ImageDataGenerator draws them
    (each uniform in +-its range, a flip with probability 1/2)."""
    rotation = _uniform(n, settings.rotation_deg, generator, device)
    shear = _uniform(n, settings.shear_deg, generator, device)
    shift = _uniform(2 * n, 2 * settings.shift, generator, device).view(n, 2)
    if settings.hflip:
        flipped = torch.rand(n, generator=generator, device=device) < 0.5
    else:
        flipped = torch.zeros(n, dtype=torch.bool, device=device)
    return sampling_maps(keras_sampling_maps(rotation, shift[:, 0], shift[:, 1], shear, flipped)), flipped


def _inverse_2x2(m: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of (n, 2, 2) matrices. torch.linalg.inv checks for singular input on the
    host, a device synchronisation every training step; ours (rotation x shear x flip) have
    determinant +-cos(shear), far from zero for any shear a config allows (validated < 90 deg)."""
    a, b, c, d = m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1]
    det = a * d - b * c
    return torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / det[:, None, None]


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """F.affine_grid(theta, (n, C, height, width), align_corners=False), computed by broadcasting:
    each output coordinate is two multiply-adds of the pixel centres. F.affine_grid multiplies a
    (height * width, 3) base grid by each (3, 2) theta as a batched fp32 GEMM, a costly pass at a
    pack's batch size (BENCHMARKS.md); this writes the grid once."""
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1
    t = theta[:, :, None, None, :]                                      # (n, 2, 1, 1, 3)
    grid = t[..., 0] * xs + (t[..., 1] * ys[:, None] + t[..., 2])       # (n, 2, height, width)
    return grid.permute(0, 2, 3, 1)


def sampling_maps(forward: torch.Tensor) -> torch.Tensor:
    """The inverse of each (n, 2, 3) affine map: from forward maps, the sampling maps grid_sample
    needs (for each OUTPUT pixel, where to read in the input), and the other way round."""
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
