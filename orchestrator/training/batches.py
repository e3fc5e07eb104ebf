"""A pack's training batch: the rows each model draws -> augmented images in the packed
network's input layout (and the landmarks moved alike), by one of two equal routes.

`fused`: one Triton kernel from the stored uint8 images (models.kernels.warp), on CUDA;
otherwise PyTorch's ops (orchestrator.training.augment). Both draw the same transforms from the generator,
so a run's random stream does not depend on the route.
"""
from __future__ import annotations

import torch

from partfer.models.kernels import warp
from partfer.orchestrator.training.jobs import AugmentSettings
from partfer.orchestrator.training.augment import (move_landmarks, normalise_pixels, random_transforms,
                                                   sampling_maps, warp_images)


def augmented_batch(images: torch.Tensor, idx: torch.Tensor, aug: AugmentSettings, gen: torch.Generator, *,
                    landmarks: torch.Tensor | None = None, fused: bool = False,
                    dtype: torch.dtype = torch.float32, channels_last: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images (N, S, S) uint8 and rows idx (M, B) -> (B, M, 1, S, S) in [-1, 1] and, given the
    data set's landmarks (N, 68, 2), the batch's moved ones ((M * B, 68, 2)).

    dtype: what the fused kernel writes (the network's compute dtype); PyTorch's route gives
    float32, which autocast casts. channels_last: the fused kernel writes each pixel's M values
    adjacent; PyTorch's route makes its transposed view contiguous (as the trainer always did).
    """
    n = idx.numel()
    fwd, flipped = random_transforms(n, aug, gen, idx.device)
    lms = None if landmarks is None else move_landmarks(landmarks[idx].reshape(n, 68, 2), fwd, flipped)
    if fused:
        return warp.warp_batch(images, idx, sampling_maps(fwd.float()), dtype, channels_last), lms
    flat = warp_images(normalise_pixels(images[idx]).reshape(n, 1, *images.shape[1:]), fwd)
    x = flat.view(*idx.shape, *images.shape[1:]).transpose(0, 1).unsqueeze(2)
    return (x.contiguous() if channels_last else x), lms


def fused_available(images: torch.Tensor, mode: str) -> bool:
    """Whether a pack takes the fused route. mode: auto = on CUDA where the kernel passed its
    self-test (train.fused_augment: true); on = wherever Triton runs the kernel, CPUs included
    through its interpreter (tests); off."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"fused augmentation mode must be auto, on or off, not {mode!r}")
    if mode == "off" or (mode == "auto" and not images.is_cuda):
        return False
    if warp.available(images, check_fused_route):
        return True
    if mode == "on":
        raise RuntimeError(f"the fused augmentation kernel cannot run on {images.device} (Triton missing, "
                           "its self-test failed, or a CPU without TRITON_INTERPRET=1)")
    return False


def check_fused_route(device: str) -> None:
    """Raise unless the fused route gives the batch PyTorch's route gives on a small pack, with
    strong but well-conditioned maps as training draws them (flips, and far past the borders):
    the kernel's self-test before a pack first takes it."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 9, 11), generator=gen, dtype=torch.uint8).to(device)
    idx = torch.tensor([[0, 3, 4], [2, 2, 1]], device=device)
    strong = AugmentSettings(hflip=True, rotation_deg=40.0, shift=0.3, shear_deg=17.0)
    got, want = (augmented_batch(images, idx, strong, torch.Generator(device=device).manual_seed(1), fused=fused,
                                 channels_last=True)[0] for fused in (True, False))
    err = float((got - want).abs().max())
    if not err < 1e-4:
        raise ArithmeticError(f"results differ from PyTorch's by {err:.3g}")


__all__ = ["augmented_batch", "check_fused_route", "fused_available"]
