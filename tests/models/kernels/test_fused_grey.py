"""The fused grey first conv + BN + ReLU (Triton's interpreter on a CPU) against conv2d,
batch_norm and relu in float64 (the kernels compute in float32)."""
import pytest
import torch
import torch.nn.functional as F

from partfer.models.kernels import fused_bn, fused_grey

pytestmark = pytest.mark.triton         # skipped only where Triton cannot run at all


def _case(b, m, co, h, w, seed, k=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, m, h, w, generator=g, dtype=torch.float64)
    wfold = torch.randn(m * co, 1, k, k, generator=g, dtype=torch.float64).requires_grad_()
    weight = torch.randn(m * co, generator=g, dtype=torch.float64).requires_grad_()
    bias = torch.randn(m * co, generator=g, dtype=torch.float64).requires_grad_()
    return x, wfold, weight, bias


def _check(x, wfold, weight, bias, rel=2e-5):
    m, k = x.shape[1], wfold.shape[-1]
    out, mean, var = fused_grey.grey_conv_bn_relu(x, wfold, weight, bias, 1e-3)
    y = F.conv2d(x, wfold, padding=k // 2, groups=m)
    want = F.relu(F.batch_norm(y, None, None, weight, bias, True, 0.0, 1e-3))
    assert out.is_contiguous(memory_format=torch.channels_last) and out.dtype == x.dtype
    torch.testing.assert_close(out, want, atol=rel, rtol=rel)
    torch.testing.assert_close(mean.double(), y.detach().mean((0, 2, 3)), atol=rel, rtol=rel)
    torch.testing.assert_close(var.double(), y.detach().var((0, 2, 3), unbiased=False), atol=rel, rtol=rel)
    g = torch.randn_like(want)
    got = torch.autograd.grad(out, (wfold, weight, bias), g)
    exp = torch.autograd.grad(want, (wfold, weight, bias), g)
    for a, e in zip(got, exp):
        assert (a - e).abs().max() <= rel * e.abs().max(), (a - e).abs().max()


@pytest.mark.parametrize("b,m,co,h,w", [(2, 3, 16, 11, 9), (3, 5, 32, 7, 13), (1, 1, 16, 6, 6)])
def test_matches_conv_batch_norm_relu(b, m, co, h, w):
    # (3, 5, 32): 32 channels per model; (1, 1, ...): one model, one image
    _check(*_case(b, m, co, h, w, seed=b + m))


def test_any_input_layout_and_a_5x5_kernel():
    x, wfold, weight, bias = _case(2, 4, 16, 10, 12, seed=7, k=5)
    _check(x.contiguous(memory_format=torch.channels_last), wfold, weight, bias)
    _check(x.transpose(2, 3).contiguous().transpose(2, 3), wfold, weight, bias)     # strided view


def test_many_programs_and_loop_iterations(monkeypatch):
    monkeypatch.setitem(fused_bn.TILES, "rows", 16)
    monkeypatch.setitem(fused_bn.TILES, "stat_programs", 8)
    _check(*_case(2, 4, 16, 15, 14, seed=8))


def test_images_get_no_gradient_and_bad_weights_are_named():
    x, wfold, weight, bias = _case(1, 2, 16, 6, 6, seed=9)
    with pytest.raises(ValueError, match="must not require"):
        fused_grey.grey_conv_bn_relu(x.requires_grad_(), wfold, weight, bias, 1e-3)
    with pytest.raises(ValueError, match="folded weight"):
        fused_grey.grey_conv_bn_relu(x.detach(), wfold.detach().repeat(1, 3, 1, 1), weight, bias, 1e-3)


def test_supported_shapes():
    x = torch.zeros(1, 2, 8, 8)
    assert fused_grey.supported(x, 16, 3)
    assert not fused_grey.supported(x, 12, 3)       # not a power of two (a matrix product side)
    assert not fused_grey.supported(x, 8, 3)        # below the 16 of a matrix product
    assert not fused_grey.supported(x, 16, 4)       # even kernel: no 'same' padding


def test_self_test_passes_where_the_kernels_run():
    from partfer.models.kernels.fused_bn import self_test
    assert self_test("cpu", fused_grey._compare_with_pytorch, "fused grey conv") is None
