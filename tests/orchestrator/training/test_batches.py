"""A pack's training batch by both routes: PyTorch's ops and the fused kernel (Triton's interpreter
on a CPU) draw the same transforms and give the same images and landmarks."""
import pytest
import torch

from partfer.orchestrator.training.jobs import AugmentSettings
from partfer.orchestrator.training.batches import augmented_batch, fused_available


def _data(n=7, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, size, size), generator=g, dtype=torch.uint8)
    landmarks = torch.rand(n, 68, 2, generator=g)
    idx = torch.randint(0, n, (3, 4), generator=g)
    return images, landmarks, idx


def test_pytorch_route_layout_and_repeatability():
    images, landmarks, idx = _data()
    a = augmented_batch(images, idx, AugmentSettings(), torch.Generator().manual_seed(1), landmarks=landmarks,
                        channels_last=True)
    b = augmented_batch(images, idx, AugmentSettings(), torch.Generator().manual_seed(1), landmarks=landmarks)
    assert a[0].shape == (4, 3, 1, 24, 24) and a[1].shape == (12, 68, 2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].min() >= -1 and a[0].max() <= 1
    # model m's sample j is row idx[m, j]: with no transform, its image unchanged
    still = AugmentSettings(hflip=False, rotation_deg=0.0, shift=0.0, shear_deg=0.0)
    x, lms = augmented_batch(images, idx, still, torch.Generator().manual_seed(1), landmarks=landmarks)
    torch.testing.assert_close(x[2, 1, 0], images[idx[1, 2]].float() * (2 / 255) - 1, atol=1e-5, rtol=0)
    torch.testing.assert_close(lms.view(3, 4, 68, 2)[1, 2], landmarks[idx[1, 2]], atol=1e-6, rtol=0)


def test_auto_takes_the_fused_route_on_cuda_only():
    images, _, _ = _data()
    assert not fused_available(images, "auto")        # a CPU tensor: PyTorch's route
    assert not fused_available(images, "off")
    with pytest.raises(ValueError, match="auto, on or off"):
        fused_available(images, True)


@pytest.mark.triton
def test_fused_route_gives_the_same_batch():
    images, landmarks, idx = _data(seed=2)
    got = {}
    for fused in (False, True):
        got[fused] = augmented_batch(images, idx, AugmentSettings(), torch.Generator().manual_seed(7),
                                     landmarks=landmarks, fused=fused, channels_last=True)
    (x, lms), (x_ref, lms_ref) = got[True], got[False]
    assert x.shape == x_ref.shape == (4, 3, 1, 24, 24)
    torch.testing.assert_close(x, x_ref, atol=5e-6, rtol=0)
    assert torch.equal(lms, lms_ref)
