"""The one-kernel batch augmentation (Triton's interpreter on a CPU) against PyTorch's path:
gather, normalise, affine_grid + grid_sample (bilinear, border), transpose to the pack's layout."""
import pytest
import torch

from partfer.models.kernels import warp
from partfer.orchestrator.training.jobs import AugmentSettings
from partfer.orchestrator.training.augment import (normalise_pixels, random_transforms, sampling_maps,
                                                   warp_images)
from partfer.orchestrator.training.batches import check_fused_route

pytestmark = pytest.mark.triton         # skipped only where Triton cannot run at all

STRONG = AugmentSettings(hflip=True, rotation_deg=40.0, shift=0.3, shear_deg=17.0)   # reaches the borders


def _case(n_images, m, b, h, w, seed, settings=STRONG):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_images, h, w), generator=g, dtype=torch.uint8)
    idx = torch.randint(0, n_images, (m, b), generator=g)
    forward, _ = random_transforms(m * b, settings, g, "cpu")
    return images, idx, forward


def _pytorch(images, idx, forward):
    m, b = idx.shape
    flat = normalise_pixels(images[idx]).reshape(m * b, 1, *images.shape[1:])
    return warp_images(flat, forward).view(m, b, *images.shape[1:]).transpose(0, 1).unsqueeze(2)


@pytest.mark.parametrize("m,b,h,w", [(5, 3, 20, 24), (17, 2, 9, 7), (1, 1, 12, 12), (3, 4, 31, 16)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_matches_grid_sample(m, b, h, w, channels_last):
    # 17 models: more than one tile of models, the last one masked; (1, 1): arguments equal to 1
    # reach Triton as constants
    images, idx, forward = _case(6, m, b, h, w, seed=m * 100 + h)
    got = warp.warp_batch(images, idx, sampling_maps(forward), torch.float32, channels_last)
    assert got.shape == (b, m, 1, h, w) and got.dtype == torch.float32
    flat = got.squeeze(2)
    assert flat.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(got, _pytorch(images, idx, forward), atol=5e-6, rtol=0)


def test_bf16_output_is_the_float32_result_rounded():
    images, idx, forward = _case(4, 6, 5, 16, 16, seed=3)
    got = warp.warp_batch(images, idx, sampling_maps(forward), torch.bfloat16)
    want = _pytorch(images, idx, forward)
    assert got.dtype == torch.bfloat16
    # one rounding of float32 values that agree to ~1e-6: at most one bf16 step apart
    step = torch.finfo(torch.bfloat16).eps * want.abs().clamp(min=2 ** -8)
    assert ((got.float() - want).abs() <= step).all()


def test_identity_maps_return_the_normalised_images():
    images, idx, _ = _case(3, 2, 2, 10, 14, seed=4)
    forward = torch.eye(2, 3).repeat(4, 1, 1)
    got = warp.warp_batch(images, idx, sampling_maps(forward), torch.float32)
    torch.testing.assert_close(got.squeeze(2).transpose(0, 1), normalise_pixels(images[idx]), atol=1e-6, rtol=0)


def test_bad_inputs_are_named():
    images, idx, forward = _case(3, 2, 2, 10, 10, seed=5)
    with pytest.raises(ValueError, match="uint8"):
        warp.warp_batch(images.float(), idx, sampling_maps(forward), torch.float32)
    with pytest.raises(ValueError, match="theta"):
        warp.warp_batch(images, idx, sampling_maps(forward)[:3], torch.float32)


def test_self_test_passes_where_the_kernel_runs():
    assert warp.available(torch.zeros(1, dtype=torch.uint8), check_fused_route)
